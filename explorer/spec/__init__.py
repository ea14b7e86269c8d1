"""Reading a spec: YAML files, extends and overrides, validation through the registry (per-layer layouts included), Hugging Face configs, and the specs shipped by name."""
