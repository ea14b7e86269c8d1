"""Running analyses: the context and runner, reports, comparisons, charts and progress."""
