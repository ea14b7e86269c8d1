"""Training runs: their settings, the loop, the corpus, devices and compilation."""
