"""The built-in analysis plugins."""
