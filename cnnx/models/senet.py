"""SENet (Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018 / arXiv 2017;
Table 1 for SE-ResNet-50 / SE-ResNeXt-50, Appendix for SENet-154).

Every residual branch ends in a squeeze-and-excitation gate (`cnnx.layers.se.SqueezeExcite`,
squeeze width = channels / `reduction`, 16 in the paper) before it joins the shortcut. The
layout is the original Caffe release as ported by Cadene and kept in timm as `legacy_*`, so
timm weights convert one to one:

  seresnet50         SE-ResNet bottleneck, blocks (3, 4, 6, 3)
  seresnet101        blocks (3, 4, 23, 3)
  seresnet152        blocks (3, 8, 36, 3)
  seresnext50_32x4d  SE-ResNeXt bottleneck 32×4d, (3, 4, 6, 3)
  senet154           SE bottleneck, 64 groups, (3, 8, 36, 3)

Differences from torchvision's ResNet that matter for conversion and parity:
  * SE-ResNet puts the stride of a bottleneck in its first 1×1 conv (Caffe "v1"); SE-ResNeXt
    and SENet-154 put it in the 3×3.
  * The stem max pool is 3×3/2 without padding but with `ceil_mode=True` (Caffe rounding).
  * SENet-154 has a three-conv 3×3 stem (64, 64, 128), bottlenecks of widths 2·planes (1×1)
    and 4·planes (grouped 3×3, 64 groups), and 3×3 projection shortcuts in stages 2-4.
  * timm builds these with dropout 0.2 before the classifier (the spec's `dropout`).
timm names: layer0.conv1/bn1 (conv2/3, bn2/3 for SENet-154), layerN.M.conv1..3/bn1..3,
layerN.M.se_module.fc1/fc2, layerN.0.downsample.0/1, last_linear.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, ConvNormAct, DropPath, drop_path_rates, maybe_remat
from cnnx.layers.pool import torch_max_pool
from cnnx.layers.se import SqueezeExcite
from cnnx.models import layer_groups
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters, round_repeats


class SEBottleneck(nn.Module):
    """Bottleneck with a squeeze-and-excitation gate on the residual branch.

    Attributes:
      planes: the stage's base width (output is 4 · planes).
      strides: spatial stride of the block.
      kind: 'seresnet' (stride in conv1), 'seresnext' (grouped, width from `base_width`) or
        'senet' (SENet-154: widths 2·planes and 4·planes).
      groups: groups of the 3×3 convolution.
      base_width: SE-ResNeXt bottleneck width per group at planes=64.
      reduction: SE reduction ratio.
      projection: whether the shortcut is a convolution + BN.
      downsample_kernel: kernel size of that convolution (3 in SENet-154's stages 2-4).
      drop_path_rate: stochastic depth of this block.
      dtype: compute dtype.
    """

    planes: int
    strides: int = 1
    kind: str = "seresnet"
    groups: int = 1
    base_width: int = 4
    reduction: int = 16
    projection: bool = False
    downsample_kernel: int = 1
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Residual bottleneck with a squeeze-excite gate.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages; stochastic depth
            on the branch (needs a 'dropout' rng when `drop_path_rate` > 0).

        Returns:
          (B, H / strides, W / strides, 4 · planes).
        """
        out = self.planes * 4
        if self.kind == "seresnet":
            w1, w2, s1, s2 = self.planes, self.planes, self.strides, 1
        elif self.kind == "seresnext":
            width = math.floor(self.planes * self.base_width / 64) * self.groups
            w1, w2, s1, s2 = width, width, 1, self.strides
        elif self.kind == "senet":
            w1, w2, s1, s2 = self.planes * 2, self.planes * 4, 1, self.strides
        else:
            raise ValueError(
                f"SENet block kind must be seresnet/seresnext/senet, got {self.kind!r}"
            )
        # Thinned models (width_mult < 1) may have fewer channels than groups; keep the largest
        # group count that divides both widths (unchanged at the published widths).
        groups = math.gcd(self.groups, w1, w2)
        y = ConvNormAct(w1, 1, s1, dtype=self.dtype, name="conv1")(x, train=train)
        y = ConvNormAct(w2, 3, s2, groups=groups, dtype=self.dtype, name="conv2")(y, train=train)
        y = ConvNormAct(out, 1, act=None, dtype=self.dtype, name="conv3")(y, train=train)
        y = SqueezeExcite(out // self.reduction, dtype=self.dtype, name="se")(y)
        y = DropPath(self.drop_path_rate)(y, train=train)
        if self.projection:
            x = ConvNormAct(
                out,
                self.downsample_kernel,
                self.strides,
                act=None,
                dtype=self.dtype,
                name="downsample",
            )(x, train=train)
        return nn.relu(y + x)


class SENet(Classifier):
    """SE-ResNet, SE-ResNeXt and SENet-154 in timm's `legacy_senet` layout.

    Attributes:
      kind: block kind (see `SEBottleneck`).
      stage_sizes: blocks per stage.
      groups: groups of every 3×3 block convolution (1, 32 or 64).
      base_width: SE-ResNeXt width per group.
      reduction: SE reduction ratio (16 in the paper).
      inplanes: stem output channels (64; 128 for SENet-154).
      input_3x3: three 3×3 stem convs instead of one 7×7 (SENet-154).
      downsample_kernel: kernel of the projection shortcuts of stages 2-4 (1; 3 for SENet-154).
      width_mult: scales stem and stage channels (`round_filters`).
    """

    kind: str = "seresnet"
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    groups: int = 1
    base_width: int = 4
    reduction: int = 16
    inplanes: int = 64
    input_3x3: bool = False
    downsample_kernel: int = 1

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        inplanes = round_filters(self.inplanes, self.width_mult)
        if self.input_3x3:
            stem64 = round_filters(64, self.width_mult)
            x = ConvNormAct(stem64, 3, 2, dtype=self.dtype, name="stem1")(x, train=train)
            x = ConvNormAct(stem64, 3, dtype=self.dtype, name="stem2")(x, train=train)
            x = ConvNormAct(inplanes, 3, dtype=self.dtype, name="stem3")(x, train=train)
        else:
            x = ConvNormAct(inplanes, 7, 2, dtype=self.dtype, name="stem1")(x, train=train)
        x = torch_max_pool(x, 3, 2, ceil_mode=True)
        repeats = [round_repeats(r, self.depth_mult) for r in self.stage_sizes]
        rates = iter(drop_path_rates(self.drop_path_rate, sum(repeats)))
        in_features = inplanes
        for i, n in enumerate(repeats):
            planes = round_filters(64 * 2**i, self.width_mult)
            for j in range(n):
                strides = 2 if (i > 0 and j == 0) else 1
                x = maybe_remat(SEBottleneck, self.remat)(
                    planes,
                    strides,
                    kind=self.kind,
                    groups=self.groups,
                    base_width=self.base_width,
                    reduction=self.reduction,
                    projection=strides != 1 or in_features != planes * 4,
                    # timm: stage 1's projection is always 1×1.
                    downsample_kernel=self.downsample_kernel if i > 0 else 1,
                    drop_path_rate=next(rates),
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j}",
                )(x, train=train)
                in_features = planes * 4
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_PAPER = "Hu et al. 2017, Squeeze-and-Excitation Networks"
_TOP1_SRC = "Hu et al. 2017, Table 2 (224 px single crop)"

# name: (kwargs, exact timm legacy_* count, paper top-1 from its Table 2 top-1 error)
SENET_TABLE = {
    "seresnet50": (dict(kind="seresnet", stage_sizes=(3, 4, 6, 3)), 28_088_024, 76.71),
    "seresnet101": (dict(kind="seresnet", stage_sizes=(3, 4, 23, 3)), 49_326_872, 77.62),
    "seresnet152": (dict(kind="seresnet", stage_sizes=(3, 8, 36, 3)), 66_821_848, 78.43),
    "seresnext50_32x4d": (
        dict(kind="seresnext", stage_sizes=(3, 4, 6, 3), groups=32, base_width=4),
        27_559_896,
        78.90,
    ),
    "senet154": (
        dict(
            kind="senet",
            stage_sizes=(3, 8, 36, 3),
            groups=64,
            inplanes=128,
            input_3x3=True,
            downsample_kernel=3,
        ),
        115_088_984,
        None,
    ),
}

register_family(
    "senet",
    SENet,
    {
        name: dict(
            kwargs=dict(kwargs, dropout_rate=0.2),
            reference=f"timm:legacy_{name}",
            param_count=count,
            top1=(top1, _TOP1_SRC) if top1 else None,
        )
        for name, (kwargs, count, top1) in SENET_TABLE.items()
    },
    paper=_PAPER,
    year=2017,
    dropout=0.2,
    test_resolution=32,
    layer_groups=layer_groups.STAGED,
)
