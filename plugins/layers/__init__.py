"""Torch implementations of the built-in components (imported only when a model is built)."""
