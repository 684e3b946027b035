"""cnnx: image classification architectures in JAX/Flax, with the tools to train and study them."""

from cnnx import xla_defaults as _xla_defaults

__version__ = "0.1.0"

# Before any JAX backend starts (XLA reads XLA_FLAGS once); see cnnx/xla_defaults.py.
_xla_defaults.apply()
