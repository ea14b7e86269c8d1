"""Measurements the analyses share: FLOPs and parameter costs, saved activations, the one memory model, and where non-finite numbers first appear."""
