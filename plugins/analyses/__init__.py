"""The built-in analysis plugins."""

from explorer import ParamError


def seq_len_within_context(config, options):
    """``seq_len`` 0 means the context length; anything longer than the context cannot run."""
    if options["seq_len"] > config.context_length:
        raise ParamError("seq_len", f"{options['seq_len']} is longer than model.context_length "
                                    f"{config.context_length}",
                         f"1..{config.context_length}, or 0 for the context length")
