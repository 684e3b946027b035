"""Convolution helpers: padding conventions and the conv + norm + activation unit."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx import backends
from cnnx.layers.norm import batch_norm

Padding = str | int | Sequence[tuple[int, int]]

# The convolution every cnnx layer runs: `lax.conv_general_dilated` on the platform's route
# (on the CPU oneDNN's convolutions or XLA's with faster gradients; see `cnnx.backends`).
conv_general_dilated = backends.conv_general_dilated
# `nn.Conv` running it; a partial, so Flax still names unnamed ones `Conv_<n>` and parameter
# trees are unchanged. Models use this, never `nn.Conv` directly.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)

# Convolution kernel initialisers by name, for models with a `kernel_init` option:
# 'he' (He et al. 2015, "Delving deep", §2.2: N(0, 2 / fan), fan-out as torchvision's ResNets;
# every ConvNormAct's default), 'glorot' (Glorot & Bengio 2010: uniform, variance 2 / (fan_in +
# fan_out)) and 'normal' (the fixed N(0, 0.01) of AlexNet-era nets).
KERNEL_INITS = {
    "he": nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
    "glorot": nn.initializers.glorot_uniform(),
    "normal": nn.initializers.normal(0.01),
}


def kernel_initializer(name: str) -> Callable:
    """The initialiser `KERNEL_INITS[name]`.

    Raises:
      ValueError: an unknown name (listing the known ones).
    """
    if name not in KERNEL_INITS:
        raise ValueError(f"kernel_init must be one of {sorted(KERNEL_INITS)}, got {name!r}")
    return KERNEL_INITS[name]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def torch_padding(kernel_size, dilation=1) -> list[tuple[int, int]]:
    """torch's symmetric padding `(k - 1) * d // 2` on each side, per spatial dimension."""
    ks, ds = _pair(kernel_size), _pair(dilation)
    return [((k - 1) * d // 2, (k - 1) * d // 2) for k, d in zip(ks, ds)]


def conv_padding(padding: Padding, kernel_size, dilation=1):
    """Resolves a padding spec to what `nn.Conv` takes.

    Args:
      padding: 'torch' (symmetric, as torchvision; the default everywhere), 'same' (TensorFlow
        SAME: asymmetric when the stride is even), 'valid', an int (symmetric, per side), or
        explicit ((lo, hi), (lo, hi)) pairs.
      kernel_size: int or pair.
      dilation: int or pair.
    """
    if isinstance(padding, str):
        p = padding.lower()
        if p == "torch":
            return torch_padding(kernel_size, dilation)
        if p in ("same", "valid"):
            return p.upper()
        raise ValueError(
            f"padding must be 'torch', 'same', 'valid', an int or pairs; got {padding!r}"
        )
    if isinstance(padding, int):
        return [(padding, padding)] * 2
    return [tuple(p) for p in padding]


class ConvNormAct(nn.Module):
    """Convolution, then normalisation, then activation: the unit most CNNs are made of.

    Submodules are named `conv` and `bn` so converters can address them.

    Attributes:
      features: output channels.
      kernel_size: int or pair.
      strides: int or pair.
      groups: feature groups (1: dense; `features == in_channels == groups`: depthwise).
      dilation: int or pair.
      padding: see `conv_padding`.
      use_bias: add a bias to the convolution (off when a norm follows).
      norm: 'batch', or None for no normalisation.
      act: activation function, or None.
      bn_momentum, bn_epsilon: BatchNorm settings.
      zero_init_norm: start the norm scale at zero (last norm of a residual branch).
      kernel_init: the convolution's initialiser (default He's, `KERNEL_INITS['he']`).
      dtype, param_dtype: compute and parameter dtypes.
    """

    features: int
    kernel_size: Any = 3
    strides: Any = 1
    groups: int = 1
    dilation: Any = 1
    padding: Padding = "torch"
    use_bias: bool = False
    norm: str | None = "batch"
    act: Callable | None = nn.relu
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    zero_init_norm: bool = False
    kernel_init: Callable = KERNEL_INITS["he"]
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Convolution, norm, activation.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages (norm 'batch');
            False uses them.

        Returns:
          (B, H / stride, W / stride, features) (rounded as the padding gives).
        """
        x = Conv(
            self.features,
            _pair(self.kernel_size),
            strides=_pair(self.strides),
            padding=conv_padding(self.padding, self.kernel_size, self.dilation),
            kernel_dilation=_pair(self.dilation),
            feature_group_count=self.groups,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            name="conv",
        )(x)
        if self.norm == "batch":
            x = batch_norm(
                train,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                zero_init=self.zero_init_norm,
                name="bn",
            )(x)
        elif self.norm is not None:
            raise ValueError(f"ConvNormAct: unknown norm {self.norm!r}; use 'batch' or None")
        if self.act is not None:
            x = self.act(x)
        return x
