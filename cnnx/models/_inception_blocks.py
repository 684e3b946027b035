"""Building blocks shared by the Inception families (v3, v4, Inception-ResNet-v2).

Conv-BN-ReLU with TensorFlow's BatchNorm epsilon and scaled widths, the base class of the
branch blocks, and the pools the branches use. Private to `cnnx.models`: the families share
this module instead of importing each other.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ConvNormAct
from cnnx.layers.pool import max_pool
from cnnx.models.scaling import round_filters


def basic_conv(
    features, kernel, strides=1, padding="torch", *, width_mult, dtype, bn_epsilon=1e-3, name
):
    """Conv, BatchNorm (eps 1e-3, TensorFlow's), ReLU with the width scaled.

    torchvision's `BasicConv2d`, timm's `ConvNormAct`. `padding` 'torch' is k//2 per side, 0 is
    none; `features` is the width at `width_mult` 1 (`round_filters`).
    """
    return ConvNormAct(
        round_filters(features, width_mult),
        kernel,
        strides,
        padding=padding,
        bn_epsilon=bn_epsilon,
        dtype=dtype,
        name=name,
    )


class InceptionBlock(nn.Module):
    """Base of the Inception branch blocks: `self.conv(...)` builds a scaled `basic_conv`.

    Attributes:
      width_mult: scales every channel count (`round_filters`).
      dtype: compute dtype; parameters stay float32.
    """

    width_mult: float = 1.0
    dtype: Any = jnp.float32

    def conv(self, features, kernel, strides=1, padding="torch", *, name):
        """`basic_conv` with this block's width and dtype."""
        return basic_conv(
            features,
            kernel,
            strides,
            padding,
            width_mult=self.width_mult,
            dtype=self.dtype,
            name=name,
        )


def avg_pool3(x, *, count_include_pad: bool):
    """3×3 stride-1 average pool with padding 1 on an NHWC array.

    `count_include_pad=True` is torch's `F.avg_pool2d(x, 3, 1, 1)` (Inception v3, as
    torchvision); False divides by the unpadded window size, as TensorFlow (Inception-v4 and
    Inception-ResNet-v2, as timm).
    """
    return nn.avg_pool(
        x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=count_include_pad
    )


def max_pool3s2(x):
    """3×3 stride-2 max pool without padding (torch's `F.max_pool2d(x, 3, 2)`)."""
    return max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


def concat(*xs):
    """The branches' outputs joined along the channel axis."""
    return jnp.concatenate(xs, axis=-1)
