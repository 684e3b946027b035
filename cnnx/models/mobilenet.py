"""MobileNet v1 (Howard et al. 2017) and MobileNet v2 (Sandler et al. 2018).

MobileNet v1 ("MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", Table 1): a strided 3×3 stem with 32 filters, then 13 depthwise-separable units
(depthwise 3×3 + BN + act, pointwise 1×1 + BN + act) with 64, 128×2, 256×2, 512×6, 1024×2
filters, global average pooling and a 1000-way classifier. The layout is timm's
`mobilenetv1_100` exactly (ReLU6 like timm and the TF-slim release, where the paper writes
ReLU; no dropout), so its weights convert one to one.

The width multiplier α (§3.3) scales every layer's channels, stem included, through
`round_filters` (multiples of 8), registered for α ∈ {1.0, 0.75, 0.5, 0.25} as
`mobilenetv1_100/075/050/025`. The paper's resolution multiplier ρ is only the input size: the
network is fully convolutional up to the global pool, so feed 224·ρ (192, 160, 128) images; the
specs keep the paper's base resolution 224.

Against the paper (Table 8 for 1.0, Table 6 for α): parameters 4,231,976 (4.2M), 2,585,560
(2.6M), 1,331,592 (1.3M), 470,072 (0.5M) — the three thinner counts are derived from the same
table and agree with timm's `_gen_mobilenet_v1(channel_multiplier=α)`. Mult-adds at 224, counted
by hand from the layer table (convolutions + classifier): 568.7M for 1.0 (paper: 569M), 325.4M,
149.5M and 41.0M (paper: 325M, 149M, 41M). XLA's cost analysis of the jitted eval forward pass
gives 1,156.0M FLOPs for 1.0, i.e. 578.0M "mult-adds" at flops/2: slightly above the paper
because it also counts BatchNorm, ReLU6 and pooling arithmetic.

MobileNet v2 ("MobileNetV2: Inverted Residuals and Linear Bottlenecks", Table 2): a 32-filter
stem, 17 inverted-residual blocks (t, c, n, s below; ReLU6, linear bottlenecks, identity
shortcuts when the shape is kept), a 1×1 conv to 1280 and the classifier. torchvision's
`mobilenet_v2` layout (3,504,872 parameters); as in torchvision, the last conv is not thinned
below 1280 for width < 1.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, ConvNormAct
from cnnx.layers.mbconv import DepthwiseSeparable, InvertedResidual
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters, round_repeats

# MobileNet v1 (Table 1), grouped into stages by resolution:
# (pointwise channels, units, stride of the first unit).
V1_STAGES = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2))

# MobileNet v2 (Table 2): expansion t, channels c, repeats n, first stride s.
V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV1(nn.Module):
    """MobileNet v1 in timm's `mobilenetv1_100` layout.

    Attributes:
      num_classes: classifier outputs; 0 returns pooled features.
      width_mult: the paper's width multiplier α (stem, every unit; `round_filters`).
      depth_mult: scales the units per stage (`round_repeats`); 1.0 is the paper.
      dropout_rate: dropout before the classifier (none in the paper or timm).
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 1000
    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        stem = round_filters(32, self.width_mult)
        x = ConvNormAct(stem, 3, 2, act=nn.relu6, dtype=self.dtype, name="stem")(x, train=train)
        for i, (c, n, s) in enumerate(V1_STAGES):
            features = round_filters(c, self.width_mult)
            for j in range(round_repeats(n, self.depth_mult)):
                x = DepthwiseSeparable(
                    features,
                    s if j == 0 else 1,
                    act=nn.relu6,
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j}",
                )(x, train=train)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


class MobileNetV2(nn.Module):
    """MobileNet v2 in torchvision's layout.

    Attributes:
      num_classes: classifier outputs; 0 returns pooled features.
      width_mult: scales the stem, every block and (only above 1.0, as torchvision) the last conv.
      depth_mult: scales every stage's block count (`round_repeats`).
      dropout_rate: dropout before the classifier (torchvision: 0.2).
      drop_path_rate: stochastic depth of the last block, linear in block index (none in the
        paper).
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 1000
    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout_rate: float = 0.2
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        stem = round_filters(32, self.width_mult)
        x = ConvNormAct(stem, 3, 2, act=nn.relu6, dtype=self.dtype, name="stem")(x, train=train)
        repeats = [round_repeats(n, self.depth_mult) for _, _, n, _ in V2_STAGES]
        total, index = sum(repeats), 0
        for i, ((t, c, _, s), n) in enumerate(zip(V2_STAGES, repeats)):
            features = round_filters(c, self.width_mult)
            for j in range(n):
                x = InvertedResidual(
                    features,
                    s if j == 0 else 1,
                    expand_ratio=t,
                    act=nn.relu6,
                    drop_path_rate=self.drop_path_rate * index / total,
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j}",
                )(x, train=train)
                index += 1
        last = round_filters(1280, max(1.0, self.width_mult))
        x = ConvNormAct(last, 1, act=nn.relu6, dtype=self.dtype, name="head_conv")(x, train=train)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_V1_PAPER = "Howard et al. 2017, MobileNets: Efficient CNNs for Mobile Vision Applications"
# name: (α, exact parameter count, paper top-1 at 224 from Table 6 / Table 8)
V1_TABLE = {
    "mobilenetv1_100": (1.0, 4_231_976, 70.6),
    "mobilenetv1_075": (0.75, 2_585_560, 68.4),
    "mobilenetv1_050": (0.5, 1_331_592, 63.7),
    "mobilenetv1_025": (0.25, 470_072, 50.6),
}

register_family(
    "mobilenetv1",
    MobileNetV1,
    {
        name: dict(
            kwargs=dict(width_mult=alpha),
            reference="timm:mobilenetv1_100" if name == "mobilenetv1_100" else "",
            param_count=count,
            top1=(top1, "Howard et al. 2017, Table 6 (ρ=1, 224)"),
        )
        for name, (alpha, count, top1) in V1_TABLE.items()
    },
    paper=_V1_PAPER,
    year=2017,
    resolution=224,
    min_resolution=32,
    test_resolution=32,
)

register_family(
    "mobilenet_v2",
    MobileNetV2,
    {
        "mobilenet_v2": dict(
            reference="torchvision:mobilenet_v2",
            param_count=3_504_872,
            top1=(71.878, "torchvision IMAGENET1K_V1 weights"),
        )
    },
    paper="Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    year=2018,
    resolution=224,
    dropout=0.2,
    min_resolution=32,
    test_resolution=32,
)
