"""Mobile inverted-residual blocks (MobileNet v1's depthwise-separable unit and MBConv).

`DepthwiseSeparable` is MobileNet v1's unit (Howard et al. 2017, Fig. 3): a depthwise 3×3 then a
pointwise 1×1, each followed by BN and the activation. `InvertedResidual` is MobileNet v2's
(Sandler et al. 2018, Table 1) and EfficientNet's MBConv (Tan & Le 2019): an optional 1×1
expansion, a depthwise k×k, optional squeeze-and-excitation, and a linear 1×1 projection, with
an identity shortcut when the shape is kept. Submodules are named `expand`, `dw`, `se`,
`project` (and `dw`, `pw`) so the torchvision and timm converters address them stably.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers.conv import ConvNormAct, Padding
from cnnx.layers.drop import DropPath
from cnnx.layers.se import SqueezeExcite


class DepthwiseSeparable(nn.Module):
    """Depthwise k×k conv + BN + act, then pointwise 1×1 conv + BN + act (no shortcut).

    Attributes:
      features: output channels of the pointwise convolution.
      strides: stride of the depthwise convolution.
      kernel_size: depthwise kernel size.
      act: activation after both convolutions.
      padding: 'torch' or 'same' (see `conv_padding`).
      bn_momentum, bn_epsilon: BatchNorm settings.
      dtype: compute dtype.
    """

    features: int
    strides: int = 1
    kernel_size: int = 3
    act: Callable = nn.relu
    padding: Padding = "torch"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Depthwise then pointwise convolution.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H / strides, W / strides, features).
        """
        norm = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, dtype=self.dtype)
        x = ConvNormAct(
            x.shape[-1],
            self.kernel_size,
            self.strides,
            groups=x.shape[-1],
            padding=self.padding,
            act=self.act,
            name="dw",
            **norm,
        )(x, train=train)
        return ConvNormAct(self.features, 1, act=self.act, name="pw", **norm)(x, train=train)


class InvertedResidual(nn.Module):
    """MBConv: [1×1 expand] → depthwise k×k → [squeeze-excite] → linear 1×1 project (+ identity).

    Attributes:
      features: output channels.
      strides: stride of the depthwise convolution.
      expand_ratio: hidden width = round(input channels × expand_ratio); at 1 there is no
        expansion convolution (MobileNet v2's and EfficientNet's first stage).
      kernel_size: depthwise kernel size.
      act: activation after the expansion and the depthwise convolution (ReLU6 in MobileNet
        v2, SiLU in EfficientNet).
      se_features: squeeze width of the squeeze-excite module; 0 leaves it out.
      se_act, se_gate: squeeze-excite activation and gate.
      drop_path_rate: stochastic depth of the residual branch (only used with the shortcut).
      padding: 'torch' (torchvision) or 'same' (TensorFlow, timm `tf_*`).
      bn_momentum, bn_epsilon: BatchNorm settings.
      dtype: compute dtype.
    """

    features: int
    strides: int = 1
    expand_ratio: float = 6.0
    kernel_size: int = 3
    act: Callable = nn.relu6
    se_features: int = 0
    se_act: Callable = nn.silu
    se_gate: Callable = nn.sigmoid
    drop_path_rate: float = 0.0
    padding: Padding = "torch"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Expand, depthwise, squeeze-excite, project; identity added when shapes allow.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages; stochastic depth
            on the residual branch (needs a 'dropout' rng when `drop_path_rate` > 0).

        Returns:
          (B, H / strides, W / strides, features).
        """
        norm = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, dtype=self.dtype)
        in_features = x.shape[-1]
        hidden = round(in_features * self.expand_ratio)
        y = x
        if hidden != in_features:
            y = ConvNormAct(hidden, 1, act=self.act, name="expand", **norm)(y, train=train)
        y = ConvNormAct(
            hidden,
            self.kernel_size,
            self.strides,
            groups=hidden,
            padding=self.padding,
            act=self.act,
            name="dw",
            **norm,
        )(y, train=train)
        if self.se_features:
            y = SqueezeExcite(
                self.se_features, act=self.se_act, gate=self.se_gate, dtype=self.dtype, name="se"
            )(y)
        y = ConvNormAct(self.features, 1, act=None, name="project", **norm)(y, train=train)
        if self.strides == 1 and in_features == self.features:
            # The linear bottleneck keeps the identity path free of activations (Sandler §3.3).
            y = DropPath(self.drop_path_rate)(y, train=train) + x
        return y
