"""The errors explorer raises for bad input. Each carries one line a user can act on."""


# The characters str.splitlines() breaks on.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(text):
    """``text`` with every line break shown as an escape, so an error stays on one line."""
    return "".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in str(text))


def close_matches(name, valid, n=3):
    """The (at most ``n``) entries of ``valid`` closest to a misspelt ``name``, closest first."""
    import difflib

    return difflib.get_close_matches(str(name), [str(v) for v in valid], n=n)


def did_you_mean(name, valid):
    """``"did you mean 'x'? "`` for the closest of ``valid`` to a misspelt ``name``, else ``""``:
    the start of an error's hint."""
    close = close_matches(name, valid, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


class ExplorerError(Exception):
    """Base class: the CLI prints str(error) on one line and exits with code 2."""


class SpecError(ExplorerError):
    """A spec file (or an override) is missing, malformed or names something invalid.

    The message always reads ``<file>: <key>: <what is wrong>; <what would be valid>``.
    """

    def __init__(self, source, key, problem, valid=None):
        self.source, self.key, self.problem, self.valid = source, key, problem, valid
        where = f"{source}: " if source else ""
        # A key set by ``--set KEY=...`` has ``--set KEY`` as its source: no need to name it twice.
        at = f"{key}: " if key and source != f"--set {key}" else ""
        hint = f"; {valid}" if valid else ""
        # One line, whatever a key or value in the user's file contains.
        super().__init__(one_line(f"{where}{at}{problem}{hint}"))


class ParamError(ValueError):
    """A parameter value a component or analysis refuses.

    Raised by :meth:`explorer.Param.check` and by a component's or analysis's ``check``;
    ``param`` names one of its parameters (None: the choice as a whole). Spec validation turns it
    into a :class:`SpecError` that names the file and the dotted key.
    """

    def __init__(self, param, problem, valid=None):
        self.param, self.problem, self.valid = param, problem, valid
        super().__init__(f"{problem}; {valid}" if valid else problem)


class PluginError(ExplorerError):
    """A plugin failed to import, raised in a hook, or returned something malformed."""


class ResourceError(ExplorerError):
    """A request that cannot be met on this machine (a model too big for memory, say)."""


class NotApplicable(Exception):
    """Raised by an analysis's ``run`` when it does not apply to the spec (an analysis of
    experts on a model without any): the analysis is left out of the report, text and pages,
    and listed with the reason under the JSON report's ``skipped``. Not an error, so not an
    :class:`ExplorerError`: nothing failed and the exit code stays 0.

        raise explorer.NotApplicable("no mixture-of-experts layer")
    """
