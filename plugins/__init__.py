"""explorer's built-in plugins, installed as ``explorer.plugins``. Each is registered exactly like a
third-party plugin (explorer.registry.plugin_manager.DEFAULT_PLUGINS).

One convention: a folder per kind. Its ``__init__.py`` registers the kind's components (light: it
describes them with ``Param`` s and points at their torch modules by ``"module:attribute"``, so
listing plugins and validating specs never imports torch); the torch modules lie beside it:

    norm/           layernorm, rmsnorm, none               (norms.py)
    activation/     gelu_tanh, gelu, relu, silu, ...       (activations.py)
    ffn/            mlp, glu; moe                          (mlp.py, moe.py)
    attention/      mha, gqa; mla                          (mha.py, mla.py)
    positional/     learned, rope, alibi, none, ...        (encodings.py, rope_scaling.py)
    residual/       pre_norm, post_norm, parallel, ...     (block.py: the transformer blocks)
    weight_tying/   none, tied
    tokenizer/      gpt2, bytes
    analyses/       one module per analysis
    checkpoints/    checkpoint formats (book, hf-gpt2, hf-llama, explorer's own)
    converters/     Hugging Face config.json converters, one module per model family
    impl.py         how an ``impl`` parameter picks kernels (norms, activations, attention)
"""
