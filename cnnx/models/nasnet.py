"""NASNet-A (Zoph, Vasudevan, Shlens & Le, "Learning Transferable Architectures for Scalable
Image Recognition", CVPR 2018; arXiv 2017), Figure 4 (the searched Normal and Reduction cells)
and Tables 2-3 (the ImageNet models "N @ P": N normal cells per block, P filters in the
penultimate layer): `nasnetalarge` 6 @ 4032 with a 96-filter stem (timm:nasnetalarge) and
`nasnetamobile` 4 @ 1056 with a 32-filter stem.

Layout (timm's port of the TF-slim model, names kept so timm weights convert): a 3×3 stride-2
convolution, two reduction-style stem cells, then three blocks of N cells (a "first" normal
cell that also reduces the older input with a factorised 2-path 1×1, then N-1 normal cells)
separated by two reduction cells; ReLU, global average pooling and a linear head. With
c = P / 24 channels, blocks work at c, 2c and 4c (each normal cell concatenates 6 branches,
each reduction cell 4). Every operation follows TensorFlow's 'SAME' padding (asymmetric for
stride 2), and BatchNorm uses eps 1e-3, as in the TF original. Stride-1 average pools exclude
the padding from the mean; stride-2 average pools include it (as timm's port does).

width_mult scales the stem and c (`round_filters`, multiples of 8 so every split is whole);
depth_mult scales N (`round_repeats`; at N = 1 a block is only its first cell).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, batch_norm
from cnnx.layers.conv import Conv
from cnnx.models.contract import Classifier
from cnnx.models.registry import INCEPTION_MEAN, INCEPTION_STD, register_family
from cnnx.models.scaling import round_filters, round_repeats

BN_EPS = 1e-3


def _bn(train: bool, dtype, name: str) -> nn.BatchNorm:
    return batch_norm(train, epsilon=BN_EPS, dtype=dtype, name=name)


def _avg_pool(x, strides: int):
    if strides == 1:  # torch AvgPool2d(3, 1, padding=1, count_include_pad=False)
        return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)
    return nn.avg_pool(x, (3, 3), (strides, strides), "SAME", count_include_pad=True)


def _max_pool(x):
    return nn.max_pool(x, (3, 3), (2, 2), "SAME")


class ActConvBn(nn.Module):
    """ReLU, 1×1 convolution, BatchNorm."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """ReLU, 1×1 convolution, BatchNorm.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, features).
        """
        x = Conv(self.features, (1, 1), use_bias=False, dtype=self.dtype, name="conv")(nn.relu(x))
        return _bn(train, self.dtype, "bn")(x)


class SeparableConv(nn.Module):
    """Depthwise k×k ('SAME') then pointwise 1×1, both without bias."""

    features: int
    kernel: int
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        """Depthwise then pointwise convolution.

        Args:
          x: (B, H, W, C) features.

        Returns:
          (B, H / strides, W / strides, features).
        """
        c = x.shape[-1]
        x = Conv(
            c,
            (self.kernel, self.kernel),
            self.strides,
            "SAME",
            feature_group_count=c,
            use_bias=False,
            dtype=self.dtype,
            name="depthwise_conv2d",
        )(x)
        return Conv(
            self.features, (1, 1), use_bias=False, dtype=self.dtype, name="pointwise_conv2d"
        )(x)


class BranchSeparables(nn.Module):
    """The paper's "sep k×k" op: (ReLU, separable conv, BN) twice; only the first strides.

    In the first stem cell the middle width is the output width (`stem_cell`), otherwise the
    input width.
    """

    features: int
    kernel: int
    strides: int = 1
    stem_cell: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The "sep k×k" op.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H / strides, W / strides, features).
        """
        middle = self.features if self.stem_cell else x.shape[-1]
        x = SeparableConv(middle, self.kernel, self.strides, self.dtype, name="separable_1")(
            nn.relu(x)
        )
        x = _bn(train, self.dtype, "bn_sep_1")(x)
        x = SeparableConv(self.features, self.kernel, 1, self.dtype, name="separable_2")(nn.relu(x))
        return _bn(train, self.dtype, "bn_sep_2")(x)


class FactorizedReduction(nn.Module):
    """Halves the resolution of the older input without losing half its pixels: ReLU, then
    two 1×1 convolutions on the even and on the one-pixel-shifted odd grid, concatenated
    and normalised (paths `path_1`, `path_2`, `final_path_bn`)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The factorised 2× reduction.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, ceil(H / 2), ceil(W / 2), features).
        """
        x = nn.relu(x)
        half = self.features // 2
        p1 = Conv(half, (1, 1), use_bias=False, dtype=self.dtype, name="path_1")(x[:, ::2, ::2])
        # torch: ZeroPad2d((-1, 1, -1, 1)) then stride-2 subsampling: the odd rows/columns,
        # with a zero row/column at the end when the size is odd.
        shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1::2, 1::2]
        p2 = Conv(half, (1, 1), use_bias=False, dtype=self.dtype, name="path_2")(shifted)
        return _bn(train, self.dtype, "final_path_bn")(jnp.concatenate([p1, p2], axis=-1))


def _reduction_body(module: nn.Module, a, b, features: int, train: bool, stem_cell=False):
    """The Reduction cell of Figure 4 on inputs a (`*_left` ops) and b (`*_right` ops)."""

    def sep(k, strides, name, stem=False):
        return BranchSeparables(features, k, strides, stem, module.dtype, name=name)

    c0 = sep(5, 2, "comb_iter_0_left")(a, train=train) + sep(7, 2, "comb_iter_0_right", stem_cell)(
        b, train=train
    )
    c1 = _max_pool(a) + sep(7, 2, "comb_iter_1_right", stem_cell)(b, train=train)
    c2 = _avg_pool(a, 2) + sep(5, 2, "comb_iter_2_right", stem_cell)(b, train=train)
    c3 = _avg_pool(c0, 1) + c1
    c4 = sep(3, 1, "comb_iter_4_left")(c0, train=train) + _max_pool(a)
    return jnp.concatenate([c1, c2, c3, c4], axis=-1)


class CellStem0(nn.Module):
    """First stem cell: a reduction cell on the stem convolution's output."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The first stem cell.

        Args:
          x: (B, H, W, C) stem convolution output.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H / 2, W / 2, 4 · features).
        """
        x1 = ActConvBn(self.features, self.dtype, name="conv_1x1")(x, train=train)
        return _reduction_body(self, x1, x, self.features, train, stem_cell=True)


class CellStem1(nn.Module):
    """Second stem cell: a reduction cell on (stem cell 0, factorised stem convolution)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_conv0, x_stem0, *, train: bool):
        """The second stem cell.

        Args:
          x_conv0: (B, H, W, C) stem convolution output.
          x_stem0: (B, H / 2, W / 2, C') output of the first stem cell.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H / 4, W / 4, 4 · features).
        """
        left = ActConvBn(self.features, self.dtype, name="conv_1x1")(x_stem0, train=train)
        right = FactorizedReduction(self.features, self.dtype, name="reduce")(x_conv0, train=train)
        return _reduction_body(self, left, right, self.features, train)


class ReductionCell(nn.Module):
    """Reduction cell (Figure 4, right): 4 stride-2 combinations, output 4 × features."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, x_prev, *, train: bool):
        """A reduction cell on the last two cell outputs.

        Args:
          x: (B, H, W, C) output of the previous cell.
          x_prev: (B, H, W, C') output of the cell before it.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H / 2, W / 2, 4 · features).
        """
        left = ActConvBn(self.features, self.dtype, name="conv_prev_1x1")(x_prev, train=train)
        right = ActConvBn(self.features, self.dtype, name="conv_1x1")(x, train=train)
        return _reduction_body(self, right, left, self.features, train)


class NormalCell(nn.Module):
    """Normal cell (Figure 4, left): 5 combinations plus the older input, output 6 × features.

    `first=True` is the first cell after a reduction, whose older input is twice as large: it
    is brought down by a factorised reduction instead of a 1×1 convolution.
    """

    features: int
    first: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, x_prev, *, train: bool):
        """A normal cell on the last two cell outputs.

        Args:
          x: (B, H, W, C) output of the previous cell.
          x_prev: output of the cell before it: (B, H, W, C'), or (B, 2H, 2W, C') when `first`.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, 6 · features).
        """
        f = self.features
        if self.first:
            left = FactorizedReduction(f, self.dtype, name="reduce")(x_prev, train=train)
        else:
            left = ActConvBn(f, self.dtype, name="conv_prev_1x1")(x_prev, train=train)
        right = ActConvBn(f, self.dtype, name="conv_1x1")(x, train=train)

        def sep(k, name):
            return BranchSeparables(f, k, dtype=self.dtype, name=name)

        c0 = sep(5, "comb_iter_0_left")(right, train=train) + sep(3, "comb_iter_0_right")(
            left, train=train
        )
        c1 = sep(5, "comb_iter_1_left")(left, train=train) + sep(3, "comb_iter_1_right")(
            left, train=train
        )
        c2 = _avg_pool(right, 1) + left
        c3 = _avg_pool(left, 1) + _avg_pool(left, 1)
        c4 = sep(3, "comb_iter_4_left")(right, train=train) + right
        return jnp.concatenate([left, c0, c1, c2, c3, c4], axis=-1)


class NASNetA(Classifier):
    """NASNet-A "N @ P" for ImageNet.

    Attributes:
      num_cells: N, normal cells per block (including the first cell of the block).
      num_features: P, channels of the last cell (24 c).
      stem_size: channels of the 3×3 stem convolution.
      width_mult: scales the stem and c (`round_filters`).
      depth_mult: scales N (`round_repeats`).
      dropout_rate: dropout before the classifier (paper: 0.5 for the large model).
    """

    num_cells: int = 6
    num_features: int = 4032
    stem_size: int = 96

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        c = round_filters(self.num_features // 24, self.width_mult)
        n = round_repeats(self.num_cells, self.depth_mult)
        stem = round_filters(self.stem_size, self.width_mult)
        x = Conv(stem, (3, 3), 2, "VALID", use_bias=False, dtype=self.dtype, name="conv0")(x)
        x_conv0 = _bn(train, self.dtype, "conv0_bn")(x)
        x_stem0 = CellStem0(c // 4, self.dtype, name="cell_stem_0")(x_conv0, train=train)
        x = CellStem1(c // 2, self.dtype, name="cell_stem_1")(x_conv0, x_stem0, train=train)
        prev = x_stem0
        index = 0
        for block in range(3):
            f = c * 2**block
            if block > 0:
                # The reduction's older input stays the older input of the next cell, which
                # therefore starts with a factorised reduction (timm: cell_6(red_0, cell_4)).
                x = ReductionCell(f, self.dtype, name=f"reduction_cell_{block - 1}")(
                    x, prev, train=train
                )
            for i in range(n):
                new = NormalCell(f, first=i == 0, dtype=self.dtype, name=f"cell_{index}")(
                    x, prev, train=train
                )
                prev, x = x, new
                index += 1
        x = nn.relu(x)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_PAPER = "Zoph et al. 2017, Learning Transferable Architectures for Scalable Image Recognition"

register_family(
    "nasnet",
    NASNetA,
    {
        "nasnetalarge": dict(
            kwargs=dict(num_cells=6, num_features=4032, stem_size=96),
            reference="timm:nasnetalarge",
            param_count=88_753_150,
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            resolution=331,
            crop_pct=0.911,
        ),
        "nasnetamobile": dict(
            kwargs=dict(num_cells=4, num_features=1056, stem_size=32),
            param_count=5_289_978,
            resolution=224,
        ),
    },
    paper=_PAPER,
    year=2017,
    min_resolution=32,
    test_resolution=32,
    lacks=("drop_path_rate", "remat"),
)
