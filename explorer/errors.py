"""The errors explorer raises for bad input. Each carries one line a user can act on."""


# The characters str.splitlines() breaks on.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(text):
    """``text`` with every line break shown as an escape, so an error stays on one line."""
    return "".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in str(text))


def did_you_mean(name, valid, n=1, aliases=None):
    """``"did you mean 'x'? "`` for the closest of ``valid`` to a misspelt ``name`` (up to ``n``
    of them, closest first: ``"did you mean 'x', 'y' or 'z'? "``), else ``""``: the start of an
    error's hint, before the list of what is valid. Every "did you mean" explorer prints comes
    from here. ``aliases`` maps other spellings to the valid name each stands for (a shipped
    spec's last part, ``llama3_8b``, to its name, ``models/llama3_8b``): matched, not shown."""
    import difflib

    spelt = {str(v): str(v) for v in valid}
    for alias, full in (aliases or {}).items():
        spelt.setdefault(str(alias), str(full))  # a valid name is never an alias of another
    close = difflib.get_close_matches(str(name), list(spelt), n=len(spelt) or 1)
    shown = [repr(s) for s in dict.fromkeys(spelt[key] for key in close)][:n]
    if not shown:
        return ""
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    return f"did you mean {listed}? "


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


class UnknownNameError(ExplorerError):
    """A name that is none of the valid ones: a component, an analysis, a kind, an executor.

    Reads ``[where: ]unknown <what> 'name'; did you mean 'x'? <listed>: a, b, c[; advice]``.
    ``problem`` and ``valid`` are its two halves, so a caller that knows the file and key the
    name came from can place it there: ``SpecError(source, key, exc.problem, exc.valid)``.
    """

    def __init__(self, what, name, valid, listed="registered", where="", advice=""):
        names = [str(v) for v in valid]
        self.what, self.name, self.names = what, name, names
        self.problem = f"unknown {what} {name!r}"
        self.valid = f"{did_you_mean(name, names)}{listed}: {', '.join(names) or 'none'}"
        if advice:
            self.valid += f"; {advice}"
        super().__init__(one_line(f"{where + ': ' if where else ''}{self.problem}; {self.valid}"))


class ParamError(ExplorerError):
    """A parameter value a component or analysis refuses.

    Raised by :meth:`explorer.Param.check` and by a component's or analysis's ``check``;
    ``param`` names one of its parameters (None: the choice as a whole). Spec validation turns it
    into a :class:`SpecError` that names the file and the dotted key; raised anywhere else (a
    factory), it is reported as a fault of the plugin that raised it.
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
