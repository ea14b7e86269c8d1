"""The errors explorer raises for bad input. Each carries one line a user can act on."""


class ExplorerError(Exception):
    """Base class: the CLI prints str(error) on one line and exits with code 2."""


class SpecError(ExplorerError):
    """A spec file (or an override) is missing, malformed or names something invalid.

    The message always reads ``<file>: <key>: <what is wrong>; <what would be valid>``.
    """

    def __init__(self, source, key, problem, valid=None):
        self.source, self.key, self.problem, self.valid = source, key, problem, valid
        where = f"{source}: " if source else ""
        at = f"{key}: " if key else ""
        hint = f"; {valid}" if valid else ""
        super().__init__(f"{where}{at}{problem}{hint}")


class PluginError(ExplorerError):
    """A plugin failed to import, raised in a hook, or returned something malformed."""


class ResourceError(ExplorerError):
    """A request that cannot be met on this machine (a model too big for memory, say)."""
