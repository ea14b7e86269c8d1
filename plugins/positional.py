"""Built-in positional encodings (see explorer.contracts.PositionalEncoding)."""

from explorer import Component, hookimpl


@hookimpl
def explorer_components():
    return [
        Component(
            kind="positional", name="learned",
            factory="explorer.plugins.layers.positional:LearnedPositional",
            description="A learned absolute position embedding added to the tokens (GPT-2).",
        ),
    ]
