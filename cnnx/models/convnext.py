"""ConvNeXt (Liu, Mao, Wu, Feichtenhofer, Darrell & Xie, "A ConvNet for the 2020s", CVPR 2022).

Configurations of §3 / Table 9 (channels C, blocks B per stage; `TABLE`):
  tiny    C=(96, 192, 384, 768)      B=(3, 3, 9, 3)
  small   C=(96, 192, 384, 768)      B=(3, 3, 27, 3)
  base    C=(128, 256, 512, 1024)    B=(3, 3, 27, 3)
  large   C=(192, 384, 768, 1536)    B=(3, 3, 27, 3)
  xlarge  C=(256, 512, 1024, 2048)   B=(3, 3, 27, 3)   (timm:convnext_xlarge)

A 4×4 stride-4 "patchify" stem, then per stage: (from stage 2) LayerNorm + 2×2 stride-2
downsampling convolution, and blocks of depthwise 7×7 conv -> LayerNorm -> Linear 4C -> GELU
-> Linear C -> layer scale (init 1e-6) -> stochastic depth -> residual. LayerNorm (eps 1e-6)
is taken over channels, which is the last axis in NHWC, so no permutes are needed. The head is
global average pooling, LayerNorm, Linear. Layout and names mirror torchvision's so its weights
(and timm's, see cnnx/convert/convnext.py) convert one to one.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, DropPath, drop_path_rates, maybe_remat
from cnnx.layers.conv import Conv
from cnnx.layers.dense import Dense
from cnnx.layers.transformer import gelu, layer_norm
from cnnx.models import layer_groups
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters, round_repeats

LN_EPS = 1e-6


class ConvNeXtBlock(nn.Module):
    """Depthwise 7×7, LayerNorm, inverted-bottleneck MLP (×4), layer scale, residual."""

    drop_path_rate: float = 0.0
    layer_scale_init: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """One ConvNeXt block.

        Args:
          x: (B, H, W, C) features.
          train: stochastic depth on the branch (needs a 'dropout' rng when `drop_path_rate` > 0).

        Returns:
          (B, H, W, C).
        """
        c = x.shape[-1]
        y = Conv(
            c,
            (7, 7),
            padding=3,
            feature_group_count=c,
            dtype=self.dtype,
            name="dwconv",
        )(x)
        y = layer_norm(LN_EPS, "norm", self.dtype)(y)
        y = Dense(4 * c, dtype=self.dtype, name="pwconv1")(y)
        y = gelu(y)
        y = Dense(c, dtype=self.dtype, name="pwconv2")(y)
        # Layer scale (Touvron et al. 2021): a per-channel gain starting near zero, so each
        # block starts close to the identity.
        gamma = self.param(
            "layer_scale", nn.initializers.constant(self.layer_scale_init), (c,), jnp.float32
        )
        y = y * gamma.astype(y.dtype)
        y = DropPath(self.drop_path_rate)(y, train=train)
        return x + y


class ConvNeXt(Classifier):
    """ConvNeXt in torchvision's layout.

    Attributes:
      dims: channels of the four stages.
      depths: blocks of the four stages.
      num_classes: classifier outputs; 0 returns the pooled, normalised features.
      width_mult: scales every stage's channels (`round_filters`).
      depth_mult: scales every stage's block count (`round_repeats`, at least one block).
      dropout_rate: dropout before the classifier (none in the paper).
      drop_path_rate: stochastic depth of the last block, linear in the block index over the
        whole network (torchvision/paper rule).
      layer_scale_init: initial value of the layer-scale gains.
    """

    dims: Sequence[int] = (96, 192, 384, 768)
    depths: Sequence[int] = (3, 3, 9, 3)
    layer_scale_init: float = 1e-6

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        dims = [round_filters(c, self.width_mult) for c in self.dims]
        depths = [round_repeats(d, self.depth_mult) for d in self.depths]
        rates = iter(drop_path_rates(self.drop_path_rate, sum(depths)))
        x = Conv(dims[0], (4, 4), (4, 4), padding="VALID", dtype=self.dtype, name="stem_conv")(x)
        x = layer_norm(LN_EPS, "stem_norm", self.dtype)(x)
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                x = layer_norm(LN_EPS, f"downsample{i + 1}_norm", self.dtype)(x)
                x = Conv(
                    dim,
                    (2, 2),
                    (2, 2),
                    padding="VALID",
                    dtype=self.dtype,
                    name=f"downsample{i + 1}_conv",
                )(x)
            for j in range(depth):
                x = maybe_remat(ConvNeXtBlock, self.remat)(
                    drop_path_rate=next(rates),
                    layer_scale_init=self.layer_scale_init,
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j}",
                )(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        x = layer_norm(LN_EPS, "head_norm", self.dtype)(x)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_PAPER = "Liu et al. 2022, A ConvNet for the 2020s"
_TV_TOP1 = "torchvision IMAGENET1K_V1 weights"
_DEPTHS = (3, 3, 27, 3)
_DIMS_TS = (96, 192, 384, 768)  # tiny and small
_TV = "torchvision"

# name: dims, depths, stochastic depth (torchvision recipe), reference, count, crop_pct, top-1
TABLE = {
    "convnext_tiny": (_DIMS_TS, (3, 3, 9, 3), 0.1, _TV, 28_589_128, 224 / 236, 82.520),
    "convnext_small": (_DIMS_TS, _DEPTHS, 0.4, _TV, 50_223_688, 224 / 230, 83.616),
    "convnext_base": ((128, 256, 512, 1024), _DEPTHS, 0.5, _TV, 88_591_464, 224 / 232, 84.062),
    "convnext_large": ((192, 384, 768, 1536), _DEPTHS, 0.5, _TV, 197_767_336, 224 / 232, 84.414),
    # Not in torchvision; timm's convnext_xlarge (the paper's ImageNet-22k model) has the same
    # layout. timm sets no default drop-path rate for it, so none is set here.
    "convnext_xlarge": ((256, 512, 1024, 2048), _DEPTHS, 0.0, "timm", 350_196_968, 0.875, None),
}

register_family(
    "convnext",
    ConvNeXt,
    {
        name: dict(
            kwargs=dict(dims=dims, depths=depths, drop_path_rate=dp),
            drop_path=dp,
            reference=f"{src}:{name}",
            param_count=count,
            crop_pct=crop,
            top1=(top1, _TV_TOP1) if top1 else None,
        )
        for name, (dims, depths, dp, src, count, crop, top1) in TABLE.items()
    },
    paper=_PAPER,
    year=2022,
    layer_groups=layer_groups.CONVNEXT,
    min_resolution=32,
    test_resolution=32,
)
