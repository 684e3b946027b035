"""cnnx: image classification architectures in JAX/Flax, with the tools to train and study them.

Importing cnnx changes nothing in the process: the entry points (train.py, eval.py,
scripts/*.py) add cnnx's default XLA flags themselves (`cnnx.backends.cpu.flags.apply()`).
"""

__version__ = "0.1.0"
