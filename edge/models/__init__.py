"""Int8 TFLite models and what runs them: the interpreter, manifests, the two classifiers."""
