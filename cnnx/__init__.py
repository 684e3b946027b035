"""cnnx: image classification architectures in JAX/Flax, with the tools to train and study them."""

__version__ = "0.1.0"
