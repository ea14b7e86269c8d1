"""The model: assembly from registered components, the contracts components keep, compact stacks, the KV cache, generation and the tokenizer."""
