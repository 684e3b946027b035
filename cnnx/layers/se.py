"""Squeeze-and-excitation (Hu et al., "Squeeze-and-Excitation Networks", 2017).

Global average pool, a bottleneck of two 1×1 convolutions, then a sigmoid gate that rescales
each channel. Any family can use it; the caller chooses the squeeze width (SENet: channels / 16;
EfficientNet: a quarter of the block's input channels), the activation and the gate.
1×1 convolutions (not Dense) keep torchvision / timm weights convertible one to one.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers.conv import Conv


class SqueezeExcite(nn.Module):
    """Channel attention: x * gate(fc2(act(fc1(mean(x))))).

    Attributes:
      squeeze_features: width of the bottleneck.
      act: activation between fc1 and fc2 (ReLU in SENet, SiLU in EfficientNet).
      gate: gating function (sigmoid; hard-sigmoid in MobileNet v3).
      dtype, param_dtype: compute and parameter dtypes.
    """

    squeeze_features: int
    act: Callable = nn.relu
    gate: Callable = nn.sigmoid
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        """Scales each channel by a gate computed from the pooled features.

        Args:
          x: (B, H, W, C) features.

        Returns:
          x's shape: x times the (B, 1, 1, C) gate.
        """
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = Conv(
            self.squeeze_features,
            (1, 1),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="fc1",
        )(s)
        s = self.act(s)
        s = Conv(x.shape[-1], (1, 1), dtype=self.dtype, param_dtype=self.param_dtype, name="fc2")(s)
        return x * self.gate(s)
