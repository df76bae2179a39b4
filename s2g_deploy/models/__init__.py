"""Model definitions: the dense BSRNN, the elastic supernet, and named presets."""
