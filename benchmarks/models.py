"""The models the benchmarks compare, built the same way for every script: explorer's gpt2_small
(its fast path), the book's GPTModel and Hugging Face's GPT2LMHeadModel, and a forward of each.

Shared by run.py, training.py, profile_forward.py and prototypes.py; it imports none of them.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def explorer_spec(impl=None, drop_rate=None):
    """specs/gpt2_small.yaml, which sets impl book (the book's arithmetic in training), with
    impl auto on its norm and activation and ``impl`` on its attention: explorer's fast path."""
    import explorer

    overrides = [f"components.attention.impl={impl or 'auto'}", "components.norm.impl=auto",
                 "components.activation.impl=auto"]
    if drop_rate is not None:
        overrides.append(f"model.drop_rate={drop_rate}")
    return explorer.load_spec(ROOT / "specs" / "gpt2_small.yaml", overrides=overrides)


def attention_impls():
    """The default ``impl`` of the mha attention and the choices it accepts."""
    import explorer

    registry = explorer.get_plugin_manager().registry()
    component = registry.component("attention", "mha")
    for p in component.params:
        if p.name == "impl":
            return p.default, list(p.choices) or [p.default]
    return None, []


def build_explorer(impl=None):
    """gpt2_small for inference, as ``explorer generate`` builds it: weights stored input-major
    (explorer.inference_layout: the same values, streamed faster one token at a time)."""
    import explorer

    return explorer.inference_layout(explorer.build_model(explorer_spec(impl), seed=123).eval())


def build_book():
    import torch
    from llms_from_scratch.ch04 import GPTModel

    torch.manual_seed(123)
    return GPTModel(book_config()).eval()


def book_config():
    return {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
            "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}


def build_hf(attn="sdpa"):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(123)
    return GPT2LMHeadModel(GPT2Config(attn_implementation=attn)).eval()


def forward_fn(kind, model, x):
    import torch

    if kind == "hf":
        def run():
            with torch.inference_mode():
                return model(input_ids=x, use_cache=False).logits
    else:
        def run():
            with torch.inference_mode():
                return model(x)
    return run
