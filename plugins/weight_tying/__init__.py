"""Built-in weight-tying choices: whether the output head shares the token embedding."""

from explorer import Component, hookimpl


def untied(ctx):
    return lambda model: None


def _tie(model):
    model.out_head.weight = model.tok_emb.weight  # one tensor, counted once


def tied(ctx):
    return _tie


@hookimpl
def explorer_components():
    return [
        Component(kind="weight_tying", name="none", factory=untied,
                  description="A separate output head (the book's GPTModel)."),
        Component(kind="weight_tying", name="tied", factory=tied,
                  description="The output head reuses the token embedding (GPT-2, nanoGPT)."),
    ]
