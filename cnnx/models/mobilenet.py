"""MobileNet v1 (Howard et al. 2017), v2 (Sandler et al. 2018) and v3 (Howard et al. 2019).

MobileNet v1 ("MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", Table 1): a strided 3×3 stem with 32 filters, then 13 depthwise-separable units
(depthwise 3×3 + BN + act, pointwise 1×1 + BN + act) with 64, 128×2, 256×2, 512×6, 1024×2
filters, global average pooling and a 1000-way classifier. The layout is timm's
`mobilenetv1_100` exactly (ReLU6 like timm and the TF-slim release, where the paper writes
ReLU; no dropout), so its weights convert one to one. The width multiplier α (§3.3) scales every
layer's channels, stem included, through `round_filters` (multiples of 8), registered for
α ∈ {1.0, 0.75, 0.5, 0.25} as `mobilenetv1_100/075/050/025` (Table 6). The paper's resolution
multiplier ρ is only the input size: feed 224·ρ (192, 160, 128) images.

MobileNet v2 ("MobileNetV2: Inverted Residuals and Linear Bottlenecks", Table 2): a 32-filter
stem, 17 inverted-residual blocks (t, c, n, s below; ReLU6, linear bottlenecks, identity
shortcuts when the shape is kept), a 1×1 conv to 1280 and the classifier, in torchvision's
`mobilenet_v2` layout; as in torchvision, the last conv is not thinned below 1280 for width < 1.

MobileNet v3 ("Searching for MobileNetV3", Tables 1 and 2): inverted residuals with per-block
kernel, expansion, squeeze-excite (ReLU, hard-sigmoid gate, squeeze width a quarter of the
expansion rounded to 8) and ReLU or hard-swish; a 1×1 conv to 6× the last width, pooling, then a
1×1 "conv" on the pooled vector (a Dense here, named `pre_logits`, 1280 / 1024 wide) with
hard-swish, dropout and the classifier. torchvision's `mobilenet_v3_large` and
`mobilenet_v3_small` layouts, BatchNorm eps 1e-3 / momentum 0.01. Blocks are grouped into stages
by output resolution; `depth_mult` repeats every row of the table (`round_repeats`), the copies
with stride 1.
"""

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, ConvNormAct
from cnnx.layers.dense import Dense
from cnnx.layers.mbconv import DepthwiseSeparable, InvertedResidual
from cnnx.models import layer_groups
from cnnx.models.contract import Classifier
from cnnx.models.registry import INCEPTION_MEAN, INCEPTION_STD, register_family
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

# MobileNet v3 (Tables 1, 2): stages of rows (kernel, expanded, out, squeeze-excite,
# hard-swish, stride); the first row of each stage after the first has stride 2.
V3_LARGE = (
    ((3, 16, 16, False, False, 1),),
    ((3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1)),
    ((5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1)),
    (
        (3, 240, 80, False, True, 2),
        (3, 200, 80, False, True, 1),
        (3, 184, 80, False, True, 1),
        (3, 184, 80, False, True, 1),
        (3, 480, 112, True, True, 1),
        (3, 672, 112, True, True, 1),
    ),
    ((5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1)),
)
V3_SMALL = (
    ((3, 16, 16, True, False, 2),),
    ((3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1)),
    (
        (5, 96, 40, True, True, 2),
        (5, 240, 40, True, True, 1),
        (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1),
        (5, 144, 48, True, True, 1),
    ),
    ((5, 288, 96, True, True, 2), (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1)),
)
V3_TABLES = {"large": (V3_LARGE, 1280), "small": (V3_SMALL, 1024)}


def _divisible(v: float, divisor: int = 8) -> int:
    """Nearest multiple of `divisor`, at least 90% of v (torchvision `_make_divisible`); unlike
    `round_filters` it also rounds at width 1.0 (MobileNet v3's squeeze widths, e.g. 18 -> 16)."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


class MobileNetV1(Classifier):
    """MobileNet v1 in timm's `mobilenetv1_100` layout.

    Attributes:
      width_mult: the paper's width multiplier α (stem, every unit; `round_filters`).
      depth_mult: scales the units per stage (`round_repeats`); 1.0 is the paper.
      dropout_rate: dropout before the classifier (none in the paper or timm).
    """

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


class MobileNetV2(Classifier):
    """MobileNet v2 in torchvision's layout.

    Attributes:
      width_mult: scales the stem, every block and (only above 1.0, as torchvision) the last conv.
      dropout_rate: dropout before the classifier (torchvision: 0.2).
      drop_path_rate: stochastic depth of the last block, linear in block index (none in the
        paper).
    """

    dropout_rate: float = 0.2

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


class MobileNetV3(Classifier):
    """MobileNet v3 large / small in torchvision's layout.

    Attributes:
      arch: 'large' or 'small'.
      num_classes: classifier outputs; 0 returns the pre-logits features (1280 / 1024).
      width_mult: scales the stem, every block (expansions included) and the pre-logits layer.
      depth_mult: repeats every row of the table (`round_repeats`).
      dropout_rate: dropout before the classifier (torchvision: 0.2).
      drop_path_rate: stochastic depth of the last block, linear in block index (none in the
        paper).
    """

    arch: str = "large"
    dropout_rate: float = 0.2

    @nn.compact
    def __call__(self, x, *, train: bool):
        stages, last = V3_TABLES[self.arch]
        norm = dict(bn_epsilon=1e-3, bn_momentum=0.99, dtype=self.dtype)
        x = x.astype(self.dtype)
        stem = round_filters(16, self.width_mult)
        x = ConvNormAct(stem, 3, 2, act=nn.hard_swish, name="stem", **norm)(x, train=train)
        copies = round_repeats(1, self.depth_mult)
        blocks = [
            (i, row, c) for i, stage in enumerate(stages) for row in stage for c in range(copies)
        ]
        index, counts = 0, [0] * len(stages)
        for i, (k, exp, out, se, hs, s), rep in blocks:
            expanded = round_filters(exp, self.width_mult)
            x = InvertedResidual(
                round_filters(out, self.width_mult),
                s if rep == 0 else 1,
                expand_ratio=expanded / x.shape[-1],
                kernel_size=k,
                act=nn.hard_swish if hs else nn.relu,
                se_features=_divisible(expanded // 4) if se else 0,
                se_act=nn.relu,
                se_gate=nn.hard_sigmoid,
                drop_path_rate=self.drop_path_rate * index / len(blocks),
                name=f"stage{i + 1}_block{counts[i]}",
                **norm,
            )(x, train=train)
            index, counts[i] = index + 1, counts[i] + 1
        x = ConvNormAct(6 * x.shape[-1], 1, act=nn.hard_swish, name="head_conv", **norm)(
            x, train=train
        )
        x = jnp.mean(x, axis=(1, 2))
        x = Dense(round_filters(last, self.width_mult), dtype=self.dtype, name="pre_logits")(x)
        x = nn.hard_swish(x)
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
            # timm's mobilenetv1_100 weights expect (x - 0.5) / 0.5 (its pretrained_cfg).
            **(dict(mean=INCEPTION_MEAN, std=INCEPTION_STD) if name == "mobilenetv1_100" else {}),
        )
        for name, (alpha, count, top1) in V1_TABLE.items()
    },
    paper=_V1_PAPER,
    year=2017,
    resolution=224,
    min_resolution=32,
    test_resolution=32,
    lacks=("drop_path_rate", "remat"),
    layer_groups=layer_groups.STAGED,
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
    lacks=("remat",),
    layer_groups=layer_groups.EFFICIENTNET,  # timm builds it as an EfficientNet
)

# Large and small are separate families: torchvision numbers their blocks differently, so each
# needs its own conversion mapping.
for _arch, _count, _top1 in (("large", 5_483_032, 74.042), ("small", 2_542_856, 67.668)):
    register_family(
        f"mobilenet_v3_{_arch}",
        MobileNetV3,
        {
            f"mobilenet_v3_{_arch}": dict(
                kwargs=dict(arch=_arch),
                reference=f"torchvision:mobilenet_v3_{_arch}",
                param_count=_count,
                top1=(_top1, "torchvision IMAGENET1K_V1 weights"),
            )
        },
        paper="Howard et al. 2019, Searching for MobileNetV3",
        year=2019,
        resolution=224,
        dropout=0.2,
        min_resolution=32,
        test_resolution=32,
        lacks=("remat",),
        layer_groups=layer_groups.MOBILENET_V3,
    )
