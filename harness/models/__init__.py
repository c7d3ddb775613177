"""Models: where weights come from and what methods may know about them.

    source      one resolver for every model source (an installed package's folder, the hub, a GGUF file in a package,
                a tiny random config): the model's own config, its tokenizer, a weightless skeleton for start-up checks
    gguf        a GGUF file dequantised once into float weights, cached by the file's sha256
    info        ModelInfo: the paper's weight types (q k v o mlp) mapped to module names, layers, width, the task head
    classifier  sequence classifiers with a fresh task head ([CLS] or mean pooling)
    causal_lm   causal language models for the generation tasks

Import the module you need; this package imports nothing itself."""
