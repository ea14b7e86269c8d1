"""Built-in converters of Hugging Face configs to specs (one module per architecture family).

Registered like any third-party converter: another architecture is one more
``ConfigConverter`` in a plugin of its own. This module stays light (the converters are
``"module:attribute"`` strings) so listing plugins imports nothing else.
"""

from explorer import ConfigConverter, hookimpl

_PKG = "explorer.plugins.converters"

# Fields of one family that do not change what the model computes (beyond explorer.spec.hf_config.
# IGNORED, which every config shares).
LLAMA_IGNORES = ("pretraining_tp",)  # Meta's tensor-parallel slicing: the same products
# nanotron's export marker (SmolLM); its rope_interleaved: false is transformers' rotate-half.
NANOTRON_IGNORES = ("is_llama_config",)
NANOTRON_OFF = {"rope_interleaved": False}
PHI3_IGNORES = (
    "embd_pdrop",  # transformers' Phi-3 never applies it
    "original_max_position_embeddings")  # read by longrope scaling only, which is refused
MOE_IGNORES = ("output_router_logits",)  # what transformers returns
DEEPSEEK_IGNORES = (
    "aux_loss_alpha", "seq_aux",  # DeepSeek's own auxiliary-loss settings, training only
    "ep_size",  # expert parallelism: how experts are spread over devices
    "num_nextn_predict_layers",  # V3's multi-token-prediction module, which transformers omits
    "quantization_config",  # how the published weights are stored (fp8 blocks)
    "pretraining_tp", *MOE_IGNORES)
# Mamba fields read only when initialising weights.
MAMBA_INIT = ("time_step_rank",  # Mamba-1's low-rank dt; Mamba-2 projects dt directly
              "rescale_prenorm_residual", "time_step_init_scheme", "time_step_scale")
MAMBA2_IGNORES = (
    *MAMBA_INIT,
    "residual_in_fp32",  # the residual's dtype: the same in float32, where explorer computes
    "norm_before_gate",  # transformers' torch code always gates, then normalises
    "rms_norm")  # transformers' Mamba-2 always uses RMSNorm
NEMOTRON_IGNORES = (
    *MAMBA_INIT, "residual_in_fp32",
    "use_mamba_kernels",  # whether transformers may call mamba-ssm's kernels: the same function
    "mamba_ssm_cache_dtype",  # the dtype transformers keeps states in while generating
    "num_logits_to_keep",  # which logits transformers returns while generating
    "mamba_proj_bias",  # transformers 5 biases the projections by use_bias instead
    "rms_norm_eps",  # transformers' Nemotron-H normalises with layer_norm_epsilon
    "attention_head_dim",  # the older name of head_dim, which transformers 5 reads
    "hidden_dropout",  # transformers' Nemotron-H never applies it
    "mtp_layers_block_type", *MOE_IGNORES)  # a multi-token-prediction module, refused if present


@hookimpl
def explorer_config_converters():
    llama = f"{_PKG}.llama:convert"
    return [
        ConfigConverter("gpt2", f"{_PKG}.gpt2:convert", "GPT2LMHeadModel: layernorm, "
                        "gelu_tanh, mlp, mha, learned positions, tied head",
                        ignores=("summary_type", "summary_use_proj", "summary_activation",
                                 "summary_proj_to_labels", "summary_first_dropout",
                                 "n_ctx")),
        ConfigConverter("llama", llama, "Llama 1-3: rmsnorm, glu, gqa, rope",
                        ignores=(*LLAMA_IGNORES, *NANOTRON_IGNORES), ignores_when=NANOTRON_OFF),
        ConfigConverter("mistral", llama, "Mistral: Llama with a sliding window"),
        ConfigConverter("qwen2", llama, "Qwen2: Llama with q/k/v biases",
                        ignores_when={"use_mrope": False}),  # Qwen2-VL's rope, off in Qwen2.5
        ConfigConverter("qwen3", llama, "Qwen3: Llama with per-head q/k RMSNorm"),
        ConfigConverter("mixtral", llama, "Mixtral: Llama (Mistral) with a mixture of experts",
                        ignores=MOE_IGNORES),
        ConfigConverter("phi3", f"{_PKG}.phi3:convert", "Phi-3: Llama with fused qkv and "
                        "gate/up weights", ignores=PHI3_IGNORES, ignores_when={
                            "attention_bias": False}),  # transformers' Phi-3 has no biases
        ConfigConverter("gemma2", f"{_PKG}.gemma2:convert", "Gemma 2: sandwich norms, "
                        "soft-capping, alternating sliding windows",
                        ignores=("sliding_window_size",)),  # an early name transformers never read
        ConfigConverter("deepseek_v2", f"{_PKG}.deepseek:convert", "DeepSeek-V2: latent "
                        "attention, shared + routed experts", ignores=DEEPSEEK_IGNORES),
        ConfigConverter("deepseek_v3", f"{_PKG}.deepseek:convert", "DeepSeek-V3: V2 with "
                        "sigmoid, bias-corrected, group-limited routing", ignores=DEEPSEEK_IGNORES),
        ConfigConverter("qwen2_moe", f"{_PKG}.qwen_moe:convert", "Qwen2-MoE: Qwen2 with "
                        "routed experts, a gated shared expert, dense mlp_only_layers",
                        ignores=MOE_IGNORES),
        ConfigConverter("qwen3_moe", f"{_PKG}.qwen_moe:convert", "Qwen3-MoE: Qwen3 with "
                        "routed experts, dense mlp_only_layers", ignores=MOE_IGNORES),
        ConfigConverter("mamba2", f"{_PKG}.mamba:convert_mamba2", "Mamba-2: the SSD mixer in "
                        "every layer, no feed-forward, no positions",
                        ignores=MAMBA2_IGNORES),
        ConfigConverter("nemotron_h", f"{_PKG}.mamba:convert_nemotron_h", "Nemotron-H: one "
                        "sublayer a layer, Mamba-2, attention without positions, or a relu2 MLP",
                        ignores=NEMOTRON_IGNORES),
        ConfigConverter("qwen3_next", f"{_PKG}.qwen3_next:convert", "Qwen3-Next: gated "
                        "DeltaNet and gated attention layers, partial RoPE, routed + gated "
                        "shared experts", ignores=MOE_IGNORES,
                        ignores_when={"use_sliding_window": False}),  # the published files' field
    ]
