"""The per-layer layout that the layer analyses and the compact-model tests share: 4 layers of
width 16, an MoE with one shared expert, windows and NoPE on some layers, and a latent
attention of distinct sizes (tests/analysis/test_layer_analyses.py works the counts out by hand)."""

MODEL = {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 4, "n_layers": 4,
         "drop_rate": 0.0}
MOE = {"name": "moe", "n_experts": 4, "top_k": 2, "n_shared": 1, "hidden": 8}
COMPONENTS = {"norm": "rmsnorm", "activation": "silu", "ffn": MOE,
              "attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False},
              "positional": "rope"}
LAYOUT = [{"every": 2, "offset": 1, "components": {"attention": {"window": 4}}},
          {"every": 4, "offset": 3, "components": {"positional": "none"}},
          {"first": 1, "components": {"ffn": {"name": "glu", "hidden": 24}}}]
# Latent attention on the tiny model: q 16 -> 4 * (6 + 4), kv_down 16 -> 12 + 4, kv_up 12 ->
# 4 * (6 + 5), out 4 * 5 -> 16.
MLA = {"name": "mla", "kv_lora_rank": 12, "qk_nope_head_dim": 6, "qk_rope_head_dim": 4,
       "v_head_dim": 5}
