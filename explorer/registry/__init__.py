"""The plugin registry: the hook specifications, the plugin manager, and the descriptors (Component, Param, Analysis, ...) plugins hand to the core.

``params`` holds Param, the one description of every option (the core's own too), and the one
engine that checks values against it."""
