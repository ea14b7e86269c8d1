"""Built-in checkpoint formats (implementations in hf_gpt2.py, hf_llama.py, hf_deepseek.py,
hf_mamba.py, hf_qwen3_next.py and book.py).

Registered like any third-party format. This module stays light (the callables are
``"module:attribute"`` strings) so listing plugins never imports torch.
"""

from explorer import CheckpointFormat, hookimpl

_HF = "explorer.plugins.checkpoints.hf_gpt2"
_LLAMA = "explorer.plugins.checkpoints.hf_llama"
_LAYOUT = "explorer.plugins.checkpoints.hf_llama_layout"
_CHECK = "explorer.plugins.checkpoints.config_check"
_BOOK = "explorer.plugins.checkpoints.book"
_DEEPSEEK = "explorer.plugins.checkpoints.hf_deepseek"
_DEEPSEEK_LAYOUT = "explorer.plugins.checkpoints.hf_deepseek_layout"
_MAMBA = "explorer.plugins.checkpoints.hf_mamba"
_QWEN3_NEXT = "explorer.plugins.checkpoints.hf_qwen3_next"


@hookimpl
def explorer_checkpoint_formats():
    return [
        CheckpointFormat(
            name="hf-gpt2", title="Hugging Face GPT-2",
            description="transformers' GPT2LMHeadModel: model.safetensors (sharded too) or "
                        "pytorch_model.bin, config.json checked; Conv1D weights transposed, "
                        "c_attn split into q, k, v. Export target hf.",
            detect=f"{_HF}:detect", to_model=f"{_HF}:to_model", check=f"{_HF}:check",
            unsupported=f"{_HF}:unsupported", target="hf", from_model=f"{_HF}:from_model",
            config=f"{_HF}:config",
        ),
        # Before hf-llama, which reads a folder without config.json as Llama's.
        CheckpointFormat(
            name="hf-deepseek", title="Hugging Face DeepSeek",
            description="transformers' deepseek_v2 and deepseek_v3 (save_pretrained folders, "
                        "sharded too): mla, dense then routed + shared experts, the rope rows "
                        "reordered from interleaved pairs; config.json checked against the spec. "
                        "Export target hf, the model_type chosen from the routing.",
            detect=f"{_DEEPSEEK}:detect", to_model=f"{_DEEPSEEK}:to_model",
            check=f"{_CHECK}:check", unsupported=f"{_DEEPSEEK_LAYOUT}:unsupported",
            target="hf", from_model=f"{_DEEPSEEK}:from_model",
            config=f"{_DEEPSEEK_LAYOUT}:config",
        ),
        CheckpointFormat(
            name="hf-mamba", title="Hugging Face Mamba-2 / Nemotron-H",
            description="transformers' mamba2 and nemotron_h (save_pretrained folders, sharded "
                        "too): the mamba2 mixer, Nemotron-H's attention and MLP layers, one "
                        "norm a layer; config.json checked against the spec. Read only.",
            detect=f"{_MAMBA}:detect", to_model=f"{_MAMBA}:to_model", check=f"{_CHECK}:check",
        ),
        CheckpointFormat(
            name="hf-qwen3-next", title="Hugging Face Qwen3-Next",
            description="transformers' qwen3_next (save_pretrained folders, sharded too; "
                        "read only): gated DeltaNet and gated attention layers, routed + "
                        "shared experts; q_proj and the DeltaNet's mixed projections split per "
                        "head; config.json checked against the spec.",
            detect=f"{_QWEN3_NEXT}:detect", to_model=f"{_QWEN3_NEXT}:to_model",
            check=f"{_CHECK}:check",
        ),
        CheckpointFormat(
            name="hf-llama", title="Hugging Face Llama family",
            description="transformers' llama, mistral, qwen2, qwen3, mixtral, gemma2, "
                        "qwen2_moe and qwen3_moe (save_pretrained folders, sharded too; "
                        "experts per expert or fused; phi3 read, its fused weights split); "
                        "config.json checked against "
                        "the spec. Export target hf, the model_type chosen from the spec.",
            detect=f"{_LLAMA}:detect", to_model=f"{_LLAMA}:to_model", check=f"{_CHECK}:check",
            unsupported=f"{_LAYOUT}:unsupported", target="hf", from_model=f"{_LLAMA}:from_model",
            config=f"{_LAYOUT}:config",
        ),
        CheckpointFormat(
            name="book", title="book",
            description="A state_dict of the book's GPTModel (torch.save, model.pth; also "
                        "{'model_state_dict': ...}) or of an explorer model: names as they are, "
                        "torch.compile/DDP prefixes stripped, causal-mask buffers ignored.",
            detect=f"{_BOOK}:detect", to_model=f"{_BOOK}:to_model",
        ),
    ]
