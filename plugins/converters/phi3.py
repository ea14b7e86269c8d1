"""Phi-3 configs (``Phi3ForCausalLM``) -> Llama's components: the same model with q, k and v
fused in one ``qkv_proj`` and gate and up in one ``gate_up_proj`` (weights the hf-llama
checkpoint format splits when it reads them), no biases, a sliding window on every layer when
``sliding_window`` is set, and dropout on each sublayer's output (``resid_pdrop``)."""

from .llama import _COMMON, Family
from .llama import convert as llama_convert

PHI3 = Family("none", "sliding_window", defaults={**_COMMON, "max_position_embeddings": 4096,
                                                  "rms_norm_eps": 1e-5})


def convert(cfg):
    llama_convert(cfg, PHI3)
    rate = cfg.number("resid_pdrop", 0.0) or 0.0
    if rate:
        cfg.set("model.dropout.residual", rate, "resid_pdrop")
