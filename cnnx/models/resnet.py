"""ResNet (He et al., "Deep Residual Learning for Image Recognition", 2015).

ImageNet models follow torchvision's layout (Table 1 of the paper; "v1.5": the stride of a
bottleneck sits in its 3×3 convolution, `stride_in_1x1=True` restores the paper's v1) so
torchvision weights convert one to one and parameter counts match exactly. `groups` and
`width_per_group` give ResNeXt and Wide ResNet from the same blocks.

CIFAR models follow §4.2: a 3×3 stem with 16 filters, three stages of n basic blocks with
16/32/64 filters (6n + 2 layers), global average pooling and a 10-way classifier. Shortcuts are
the paper's option A (identity; strided subsampling and zero-padded channels when the shape
changes), so they add no parameters; `shortcut=False` gives the plain networks of §4.1/Table 6.
Their `norm`, `kernel_init` and `block` options make the variants the findings suite
(cnnx/findings) compares: no BatchNorm (Ioffe & Szegedy 2015), Glorot or N(0, 0.01)
initialisation (He et al. 2015, "Delving deep", Fig. 3) and 1×1 bottleneck blocks (He et al.
2016, "Identity mappings", §4: 9n + 2 layers).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, ConvNormAct, DropPath, drop_path_rates, maybe_remat
from cnnx.layers.conv import KERNEL_INITS, kernel_initializer
from cnnx.layers.pool import max_pool
from cnnx.models import layer_groups
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters, round_repeats


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a shortcut (ResNet-18/34 and the CIFAR ResNets)."""

    features: int
    strides: int = 1
    projection: bool = False
    shortcut: str = "projection"  # 'projection' (conv 1×1), 'zero_pad' (option A), 'none'
    drop_path_rate: float = 0.0
    zero_init_residual: bool = False
    norm: str | None = "batch"  # None: no normalisation (the convolutions get biases)
    kernel_init: Any = KERNEL_INITS["he"]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Residual (or plain) block of two 3×3 convolutions.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages; stochastic depth
            on the branch (needs a 'dropout' rng when `drop_path_rate` > 0).

        Returns:
          (B, H / strides, W / strides, features).
        """
        conv = _block_conv(self)
        y = conv(self.features, 3, self.strides, name="conv1")(x, train=train)
        y = conv(self.features, 3, act=None, zero_init_norm=self.zero_init_residual, name="conv2")(
            y, train=train
        )
        if self.shortcut == "none":
            return nn.relu(y)
        y = DropPath(self.drop_path_rate)(y, train=train)
        return nn.relu(y + _shortcut(self, x, y.shape[-1], train))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (grouped for ResNeXt), 1×1 expand ×4, with a shortcut."""

    features: int
    strides: int = 1
    projection: bool = False
    groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = False
    shortcut: str = "projection"
    drop_path_rate: float = 0.0
    zero_init_residual: bool = False
    norm: str | None = "batch"
    kernel_init: Any = KERNEL_INITS["he"]
    dtype: Any = jnp.float32
    expansion: int = 4

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Residual bottleneck block.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages; stochastic depth
            on the branch (needs a 'dropout' rng when `drop_path_rate` > 0).

        Returns:
          (B, H / strides, W / strides, expansion · features).
        """
        width = int(self.features * (self.width_per_group / 64.0)) * self.groups
        s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
        conv = _block_conv(self)
        y = conv(width, 1, s1, name="conv1")(x, train=train)
        y = conv(width, 3, s3, groups=self.groups, name="conv2")(y, train=train)
        y = conv(
            self.features * self.expansion,
            1,
            act=None,
            zero_init_norm=self.zero_init_residual,
            name="conv3",
        )(y, train=train)
        if self.shortcut == "none":
            return nn.relu(y)
        y = DropPath(self.drop_path_rate)(y, train=train)
        return nn.relu(y + _shortcut(self, x, y.shape[-1], train))


def _block_conv(block: nn.Module):
    """`ConvNormAct` with a block's normalisation, initialiser and dtype (a convolution with
    no norm after it gets a bias)."""
    return functools.partial(
        ConvNormAct,
        norm=block.norm,
        use_bias=block.norm is None,
        kernel_init=block.kernel_init,
        dtype=block.dtype,
    )


def _shortcut(block: nn.Module, x, out_features: int, train: bool):
    """The identity path of a block, adapted when the block changes shape."""
    if not block.projection:
        return x
    if block.shortcut == "zero_pad":
        # Option A: subsample by the stride and pad the new channels with zeros.
        x = x[:, :: block.strides, :: block.strides, :]
        extra = out_features - x.shape[-1]
        return jnp.pad(x, [(0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)])
    return _block_conv(block)(out_features, 1, block.strides, act=None, name="downsample")(
        x, train=train
    )


class ResNet(Classifier):
    """ImageNet ResNet / ResNeXt / Wide ResNet in torchvision's layout.

    Attributes:
      block: 'basic' or 'bottleneck'.
      stage_sizes: blocks per stage (e.g. (3, 4, 6, 3) for ResNet-50).
      width_mult: scales every stage's and the stem's channels (`round_filters`).
      groups, width_per_group: ResNeXt cardinality and bottleneck width (Wide ResNet: 128).
      stride_in_1x1: the paper's v1 (stride in the first 1×1) instead of torchvision's v1.5.
      shortcut: 'projection' (the default), or 'none' for the plain networks.
      dropout_rate: dropout before the classifier (none in the paper).
      zero_init_residual: zero the last BN scale of each block (Goyal et al. 2017).
    """

    block: str = "bottleneck"
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    stem_width: int = 64
    groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = False
    shortcut: str = "projection"
    zero_init_residual: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        stem = round_filters(self.stem_width, self.width_mult)
        x = ConvNormAct(stem, 7, 2, dtype=self.dtype, name="stem")(x, train=train)
        x = max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        repeats = [round_repeats(r, self.depth_mult) for r in self.stage_sizes]
        rates = iter(drop_path_rates(self.drop_path_rate, sum(repeats)))
        expansion = 1 if self.block == "basic" else 4
        in_features = stem
        for i, n in enumerate(repeats):
            features = round_filters(64 * 2**i, self.width_mult)
            for j in range(n):
                strides = 2 if (i > 0 and j == 0) else 1
                kwargs = dict(
                    features=features,
                    strides=strides,
                    projection=strides != 1 or in_features != features * expansion,
                    shortcut=self.shortcut,
                    drop_path_rate=next(rates),
                    zero_init_residual=self.zero_init_residual,
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j}",
                )
                if self.block == "basic":
                    block = maybe_remat(BasicBlock, self.remat)(**kwargs)
                else:
                    block = maybe_remat(Bottleneck, self.remat)(
                        groups=self.groups,
                        width_per_group=self.width_per_group,
                        stride_in_1x1=self.stride_in_1x1,
                        **kwargs,
                    )
                x = block(x, train=train)
                in_features = features * expansion
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


class CifarResNet(Classifier):
    """The 6n+2-layer CIFAR networks of He et al. (2015) §4.2 (residual or plain).

    Attributes:
      depth: total weighted layers, 6n + 2 (20, 32, 44, 56, 110, 1202; basic blocks) or 9n + 2
        (bottleneck blocks: 29, 56, 164).
      shortcut: 'zero_pad' (option A, the paper's choice for CIFAR), 'projection' (option B),
        or 'none' (plain network).
      block: 'basic' (two 3×3 convolutions, depth 6n + 2) or 'bottleneck' (1×1 reducing to a
        quarter of the stage's width, 3×3, 1×1 back to it; depth 9n + 2, He et al. 2016 §4;
        the stage widths, and so the features between blocks, are those of 'basic').
      norm: 'batch' (the paper's) or 'none' (no normalisation; convolutions get biases).
      kernel_init: convolution initialiser, a key of `cnnx.layers.conv.KERNEL_INITS`: 'he'
        (the paper's), 'glorot' or 'normal' (N(0, 0.01)); the classifier keeps its own.
    """

    depth: int = 20
    shortcut: str = "zero_pad"
    block: str = "basic"
    norm: str = "batch"
    kernel_init: str = "he"
    num_classes: int = 10
    zero_init_residual: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool):
        layers_per_block = {"basic": 2, "bottleneck": 3}.get(self.block)
        if layers_per_block is None:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        if self.norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {self.norm!r}")
        if (self.depth - 2) % (3 * layers_per_block):
            raise ValueError(
                f"CIFAR ResNet depth must be {3 * layers_per_block}n + 2 with {self.block} "
                f"blocks, got {self.depth}"
            )
        n = round_repeats((self.depth - 2) // (3 * layers_per_block), self.depth_mult)
        norm = None if self.norm == "none" else self.norm
        options = dict(norm=norm, kernel_init=kernel_initializer(self.kernel_init))
        x = x.astype(self.dtype)
        widths = [round_filters(c, self.width_mult) for c in (16, 32, 64)]
        x = ConvNormAct(
            widths[0], 3, use_bias=norm is None, dtype=self.dtype, name="stem", **options
        )(x, train=train)
        rates = iter(drop_path_rates(self.drop_path_rate, 3 * n))
        in_features = widths[0]
        for i, features in enumerate(widths):
            for j in range(n):
                strides = 2 if (i > 0 and j == 0) else 1
                # A bottleneck is a quarter of the width inside and `features` out (×4).
                block, inner = (
                    (BasicBlock, features) if self.block == "basic" else (Bottleneck, features // 4)
                )
                x = maybe_remat(block, self.remat)(
                    inner,
                    strides,
                    projection=strides != 1 or in_features != features,
                    shortcut=self.shortcut,
                    drop_path_rate=next(rates),
                    zero_init_residual=self.zero_init_residual,
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j}",
                    **options,
                )(x, train=train)
                in_features = features
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition"
_TV_TOP1 = "torchvision IMAGENET1K_V1 weights"

# name: (block, stage sizes, torchvision param count, torchvision V1 top-1)
IMAGENET_TABLE = {
    "resnet18": ("basic", (2, 2, 2, 2), 11_689_512, 69.758),
    "resnet34": ("basic", (3, 4, 6, 3), 21_797_672, 73.314),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 25_557_032, 76.130),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 44_549_160, 77.374),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 60_192_808, 78.312),
}

register_family(
    "resnet",
    ResNet,
    {
        name: dict(
            kwargs=dict(block=block, stage_sizes=sizes),
            reference=f"torchvision:{name}",
            param_count=count,
            top1=(top1, _TV_TOP1),
        )
        for name, (block, sizes, count, top1) in IMAGENET_TABLE.items()
    },
    paper=_PAPER,
    year=2015,
    layer_groups=layer_groups.STAGED,
    test_resolution=32,
)

# The paper's own ResNet-50 ("v1"): the stride of each downsampling bottleneck sits in its
# first 1×1 convolution. Same parameters as torchvision's v1.5 (stride placement is free),
# slightly cheaper and about 0.5% less accurate (NVIDIA's ResNet-50 v1.5 notes).
register_family(
    "resnet",
    ResNet,
    {
        "resnet50_v1": dict(
            kwargs=dict(block="bottleneck", stage_sizes=(3, 4, 6, 3), stride_in_1x1=True),
            param_count=IMAGENET_TABLE["resnet50"][2],
        )
    },
    paper=_PAPER,
    year=2015,
    layer_groups=layer_groups.STAGED,
)

# ResNeXt (Xie et al. 2017, Table 1: cardinality C × bottleneck width d) and Wide ResNet
# (Zagoruyko & Komodakis 2016; torchvision's ImageNet version doubles the bottleneck width,
# width_per_group=128). name: (stage sizes, groups, width_per_group, params, top-1, paper, year)
GROUPED_TABLE = {
    "resnext50_32x4d": ((3, 4, 6, 3), 32, 4, 25_028_904, 77.618, "xie", 2017),
    "resnext101_32x8d": ((3, 4, 23, 3), 32, 8, 88_791_336, 79.312, "xie", 2017),
    "resnext101_64x4d": ((3, 4, 23, 3), 64, 4, 83_455_272, 83.246, "xie", 2017),
    "wide_resnet50_2": ((3, 4, 6, 3), 1, 128, 68_883_240, 78.468, "wrn", 2016),
    "wide_resnet101_2": ((3, 4, 23, 3), 1, 128, 126_886_696, 78.848, "wrn", 2016),
}
_GROUPED_PAPERS = {
    "xie": "Xie et al. 2017, Aggregated Residual Transformations for Deep Neural Networks",
    "wrn": "Zagoruyko & Komodakis 2016, Wide Residual Networks",
}
register_family(
    "resnet",
    ResNet,
    {
        name: dict(
            kwargs=dict(block="bottleneck", stage_sizes=sizes, groups=groups, width_per_group=wpg),
            reference=f"torchvision:{name}",
            param_count=count,
            top1=(top1, _TV_TOP1),
            paper=_GROUPED_PAPERS[paper],
            year=year,
        )
        for name, (sizes, groups, wpg, count, top1, paper, year) in GROUPED_TABLE.items()
    },
    test_resolution=32,
    layer_groups=layer_groups.STAGED,
)

# Plain twins of ResNet-18/34 (He et al. 2015, Table 2): the same layers without shortcuts.
# Their counts are ResNet-18/34's minus the three 1×1 projection shortcuts (conv + BN).
register_family(
    "resnet",
    ResNet,
    {
        "plain18": dict(
            kwargs=dict(block="basic", stage_sizes=(2, 2, 2, 2), shortcut="none"),
            param_count=11_515_688,
        ),
        "plain34": dict(
            kwargs=dict(block="basic", stage_sizes=(3, 4, 6, 3), shortcut="none"),
            param_count=21_623_848,
        ),
    },
    paper=_PAPER,
    year=2015,
    layer_groups=layer_groups.STAGED,
)

# CIFAR networks (§4.2, Table 6): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M parameters.
# depth: exact parameter count (identical for the plain twin: option-A shortcuts are free).
CIFAR_DEPTHS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
register_family(
    "resnet_cifar",
    CifarResNet,
    {
        f"{kind}{d}_cifar": dict(
            kwargs=dict(depth=d, shortcut="zero_pad" if kind == "resnet" else "none"),
            param_count=count,
        )
        for kind in ("resnet", "plain")
        for d, count in CIFAR_DEPTHS.items()
    },
    paper=_PAPER + " §4.2",
    layer_groups=layer_groups.STAGED,
    year=2015,
    resolution=32,
    crop_pct=1.0,
    num_classes=10,
    min_resolution=8,
    test_resolution=16,
)
