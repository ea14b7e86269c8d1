"""Built-in checkpoint formats (implementations in hf_gpt2.py and book.py).

Registered like any third-party format: a later Hugging Face Llama mapping is one more
``CheckpointFormat`` here or in its own plugin. This module stays light (the callables are
``"module:attribute"`` strings) so listing plugins never imports torch.
"""

from explorer import CheckpointFormat, hookimpl

_HF = "explorer.plugins.checkpoints.hf_gpt2"
_BOOK = "explorer.plugins.checkpoints.book"


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
        CheckpointFormat(
            name="book", title="book",
            description="A state_dict of the book's GPTModel (torch.save, model.pth; also "
                        "{'model_state_dict': ...}) or of an explorer model: names as they are, "
                        "torch.compile/DDP prefixes stripped, causal-mask buffers ignored.",
            detect=f"{_BOOK}:detect", to_model=f"{_BOOK}:to_model",
        ),
    ]
