"""cnnx: image classification architectures in JAX/Flax, with the tools to train and study them.

Importing cnnx changes nothing in the process: the entry points (train.py, eval.py,
scripts/*.py) set cnnx's process defaults themselves (`cnnx.process_defaults.apply()`).
"""

__version__ = "0.1.0"
