"""explorer's built-in plugins. Each module here is registered exactly like a third-party plugin.

The registration modules (norm.py, attention.py, ...) are light: they describe components and
point at their implementations in ``layers/`` by ``"module:attribute"``, so that listing plugins
and validating specs never imports torch.
"""
