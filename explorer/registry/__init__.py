"""The plugin registry: the hook specifications, the plugin manager, and the descriptors (Component, Param, Analysis, ...) plugins hand to the core."""
