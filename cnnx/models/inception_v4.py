"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning", AAAI 2017; arXiv 1602.07261,
2016), Figures 3-9 and 15-19, in timm's layout (ported from the TF-slim checkpoints).

Inception-v4 (Figure 9): stem (Figure 3: 3×3/2 32, 3×3 32, 3×3 64, Mixed_3a, Mixed_4a,
Mixed_5a -> 35×35×384), 4 × Inception-A, Reduction-A, 7 × Inception-B, Reduction-B,
3 × Inception-C, global average pool, classifier.

Inception-ResNet-v2 (Figure 15, with TF-slim's stem, which timm and the released weights use:
the v3-like 3×3/2 32, 3×3 32, 3×3 64, max pool, 1×1 80, 3×3 192, max pool, then Mixed_5b ->
35×35×320): 10 × Block35 (Inception-ResNet-A, residual scale 0.17), Mixed_6a, 20 × Block17
(scale 0.10), Mixed_7a, 9 × Block8 (scale 0.20) and a last Block8 without ReLU, 1×1 conv 1536,
global average pool, classifier.

BatchNorm eps 1e-3 (TensorFlow's). 299×299 input; 75×75 is the smallest both accept. Average
pools exclude padding (`count_include_pad=False`, as TF). Submodule names are timm's, except that
timm's `features.N` (v4) and `repeat*.N` (IRv2) indices become descriptive names (`inception_b_3`,
`block17_3`); `depth_mult` scales the repeated modules of every stage (4/7/3 and 10/20/9). Dropout
before the classifier: 0.2 (the paper's keep probability 0.8); timm's default is none.
"""

import flax.linen as nn

from cnnx.layers import ClassifierHead, DropPath, drop_path_rates
from cnnx.layers.conv import Conv
from cnnx.models._inception_blocks import (
    InceptionBlock,
    avg_pool3,
    basic_conv,
    concat,
    max_pool3s2,
)
from cnnx.models.contract import Classifier
from cnnx.models.registry import INCEPTION_MEAN, INCEPTION_STD, register_family
from cnnx.models.scaling import round_repeats


class Mixed3a(InceptionBlock):
    """Inception-v4 stem, first split (Figure 3): 3×3/2 max pool ‖ 3×3/2 conv 96."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, C + 96) (channels at `width_mult` 1).
        """
        return concat(max_pool3s2(x), self.conv(96, 3, 2, 0, name="conv")(x, train=train))


class Mixed4a(InceptionBlock):
    """Inception-v4 stem, second split (Figure 3): two 1×1 -> (7×1, 1×7) -> 3×3 towers."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H - 2, W - 2, 192) (channels at `width_mult` 1).
        """
        b0 = self.conv(64, 1, name="branch0_0")(x, train=train)
        b0 = self.conv(96, 3, 1, 0, name="branch0_1")(b0, train=train)
        b1 = self.conv(64, 1, name="branch1_0")(x, train=train)
        b1 = self.conv(64, (1, 7), name="branch1_1")(b1, train=train)
        b1 = self.conv(64, (7, 1), name="branch1_2")(b1, train=train)
        b1 = self.conv(96, 3, 1, 0, name="branch1_3")(b1, train=train)
        return concat(b0, b1)


class Mixed5a(InceptionBlock):
    """Inception-v4 stem, third split (Figure 3): 3×3/2 conv 192 ‖ 3×3/2 max pool."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 192 + C) (channels at `width_mult` 1).
        """
        return concat(self.conv(192, 3, 2, 0, name="conv")(x, train=train), max_pool3s2(x))


class InceptionA(InceptionBlock):
    """Inception-v4's 35×35 Inception-A block (Figure 4)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, 384) (channels at `width_mult` 1).
        """
        b0 = self.conv(96, 1, name="branch0")(x, train=train)
        b1 = self.conv(64, 1, name="branch1_0")(x, train=train)
        b1 = self.conv(96, 3, name="branch1_1")(b1, train=train)
        b2 = self.conv(64, 1, name="branch2_0")(x, train=train)
        b2 = self.conv(96, 3, name="branch2_1")(b2, train=train)
        b2 = self.conv(96, 3, name="branch2_2")(b2, train=train)
        b3 = self.conv(96, 1, name="branch3_1")(avg_pool3(x, count_include_pad=False), train=train)
        return concat(b0, b1, b2, b3)


class ReductionA(InceptionBlock):
    """Inception-v4's 35 -> 17 Reduction-A (Figure 7; k, l, m, n = 192, 224, 256, 384)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 640 + C) (channels at `width_mult` 1).
        """
        b0 = self.conv(384, 3, 2, 0, name="branch0")(x, train=train)
        b1 = self.conv(192, 1, name="branch1_0")(x, train=train)
        b1 = self.conv(224, 3, name="branch1_1")(b1, train=train)
        b1 = self.conv(256, 3, 2, 0, name="branch1_2")(b1, train=train)
        return concat(b0, b1, max_pool3s2(x))


class InceptionB(InceptionBlock):
    """Inception-v4's 17×17 Inception-B block (Figure 5)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, 1024) (channels at `width_mult` 1).
        """
        b0 = self.conv(384, 1, name="branch0")(x, train=train)
        b1 = self.conv(192, 1, name="branch1_0")(x, train=train)
        b1 = self.conv(224, (1, 7), name="branch1_1")(b1, train=train)
        b1 = self.conv(256, (7, 1), name="branch1_2")(b1, train=train)
        b2 = self.conv(192, 1, name="branch2_0")(x, train=train)
        b2 = self.conv(192, (7, 1), name="branch2_1")(b2, train=train)
        b2 = self.conv(224, (1, 7), name="branch2_2")(b2, train=train)
        b2 = self.conv(224, (7, 1), name="branch2_3")(b2, train=train)
        b2 = self.conv(256, (1, 7), name="branch2_4")(b2, train=train)
        b3 = self.conv(128, 1, name="branch3_1")(avg_pool3(x, count_include_pad=False), train=train)
        return concat(b0, b1, b2, b3)


class ReductionB(InceptionBlock):
    """Inception-v4's 17 -> 8 Reduction-B (Figure 8)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 512 + C) (channels at `width_mult` 1).
        """
        b0 = self.conv(192, 1, name="branch0_0")(x, train=train)
        b0 = self.conv(192, 3, 2, 0, name="branch0_1")(b0, train=train)
        b1 = self.conv(256, 1, name="branch1_0")(x, train=train)
        b1 = self.conv(256, (1, 7), name="branch1_1")(b1, train=train)
        b1 = self.conv(320, (7, 1), name="branch1_2")(b1, train=train)
        b1 = self.conv(320, 3, 2, 0, name="branch1_3")(b1, train=train)
        return concat(b0, b1, max_pool3s2(x))


class InceptionC(InceptionBlock):
    """Inception-v4's 8×8 Inception-C block (Figure 6)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, 1536) (channels at `width_mult` 1).
        """
        b0 = self.conv(256, 1, name="branch0")(x, train=train)
        b1 = self.conv(384, 1, name="branch1_0")(x, train=train)
        b1 = concat(
            self.conv(256, (1, 3), name="branch1_1a")(b1, train=train),
            self.conv(256, (3, 1), name="branch1_1b")(b1, train=train),
        )
        b2 = self.conv(384, 1, name="branch2_0")(x, train=train)
        b2 = self.conv(448, (3, 1), name="branch2_1")(b2, train=train)
        b2 = self.conv(512, (1, 3), name="branch2_2")(b2, train=train)
        b2 = concat(
            self.conv(256, (1, 3), name="branch2_3a")(b2, train=train),
            self.conv(256, (3, 1), name="branch2_3b")(b2, train=train),
        )
        b3 = self.conv(256, 1, name="branch3_1")(avg_pool3(x, count_include_pad=False), train=train)
        return concat(b0, b1, b2, b3)


class InceptionV4(Classifier):
    """Inception-v4 in timm's layout.

    Attributes:
      width_mult: scales every channel count (`round_filters`).
      depth_mult: scales the Inception-A/B/C counts (4, 7, 3).
    """

    dropout_rate: float = 0.2

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        kw = dict(width_mult=self.width_mult, dtype=self.dtype)
        x = basic_conv(32, 3, 2, 0, name="stem_conv1", **kw)(x, train=train)
        x = basic_conv(32, 3, 1, 0, name="stem_conv2", **kw)(x, train=train)
        x = basic_conv(64, 3, name="stem_conv3", **kw)(x, train=train)
        x = Mixed3a(name="mixed_3a", **kw)(x, train=train)
        x = Mixed4a(name="mixed_4a", **kw)(x, train=train)
        x = Mixed5a(name="mixed_5a", **kw)(x, train=train)
        stages = (
            ("inception_a", InceptionA, 4, ReductionA, "reduction_a"),
            ("inception_b", InceptionB, 7, ReductionB, "reduction_b"),
            ("inception_c", InceptionC, 3, None, None),
        )
        for name, block, n, reduction, reduction_name in stages:
            for j in range(round_repeats(n, self.depth_mult)):
                x = block(name=f"{name}_{j}", **kw)(x, train=train)
            if reduction is not None:
                x = reduction(name=reduction_name, **kw)(x, train=train)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


class Mixed5b(InceptionBlock):
    """Inception-ResNet-v2's stem output block (TF-slim's Mixed_5b; 35×35, 320 channels)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, 320) (channels at `width_mult` 1).
        """
        b0 = self.conv(96, 1, name="branch0")(x, train=train)
        b1 = self.conv(48, 1, name="branch1_0")(x, train=train)
        b1 = self.conv(64, 5, name="branch1_1")(b1, train=train)
        b2 = self.conv(64, 1, name="branch2_0")(x, train=train)
        b2 = self.conv(96, 3, name="branch2_1")(b2, train=train)
        b2 = self.conv(96, 3, name="branch2_2")(b2, train=train)
        b3 = self.conv(64, 1, name="branch3_1")(avg_pool3(x, count_include_pad=False), train=train)
        return concat(b0, b1, b2, b3)


class ResidualInception(InceptionBlock):
    """Inception-ResNet block: branches, concatenated, a linear 1×1 conv back to the input width,
    scaled and added to the input (§3.3: scaling by 0.1-0.3 stabilises training), then ReLU.

    `kind` selects the branches: '35' (Block35, 35×35 grid), '17' (Block17), '8' (Block8).
    """

    kind: str = "35"
    scale: float = 1.0
    relu: bool = True
    drop_path_rate: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool):
        """One Inception-ResNet block: x + scale · branches.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages; stochastic depth
            on the branch (needs a 'dropout' rng when `drop_path_rate` > 0).

        Returns:
          (B, H, W, C).
        """
        c = self.conv
        b0 = c(32 if self.kind == "35" else 192, 1, name="branch0")(x, train=train)
        if self.kind == "35":
            b1 = c(32, 1, name="branch1_0")(x, train=train)
            b1 = c(32, 3, name="branch1_1")(b1, train=train)
            b2 = c(32, 1, name="branch2_0")(x, train=train)
            b2 = c(48, 3, name="branch2_1")(b2, train=train)
            b2 = c(64, 3, name="branch2_2")(b2, train=train)
            out = concat(b0, b1, b2)
        else:
            mid, k1, k2 = (160, (1, 7), (7, 1)) if self.kind == "17" else (224, (1, 3), (3, 1))
            b1 = c(128 if self.kind == "17" else 192, 1, name="branch1_0")(x, train=train)
            b1 = c(mid, k1, name="branch1_1")(b1, train=train)
            b1 = c(192 if self.kind == "17" else 256, k2, name="branch1_2")(b1, train=train)
            out = concat(b0, b1)
        out = Conv(x.shape[-1], (1, 1), dtype=self.dtype, name="conv2d")(out)
        out = DropPath(self.drop_path_rate)(out * self.scale, train=train) + x
        return nn.relu(out) if self.relu else out


class Mixed6a(InceptionBlock):
    """Inception-ResNet-v2's 35 -> 17 reduction (Figure 7; k, l, m, n = 256, 256, 384, 384)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 768 + C) (channels at `width_mult` 1).
        """
        b0 = self.conv(384, 3, 2, 0, name="branch0")(x, train=train)
        b1 = self.conv(256, 1, name="branch1_0")(x, train=train)
        b1 = self.conv(256, 3, name="branch1_1")(b1, train=train)
        b1 = self.conv(384, 3, 2, 0, name="branch1_2")(b1, train=train)
        return concat(b0, b1, max_pool3s2(x))


class Mixed7a(InceptionBlock):
    """Inception-ResNet-v2's 17 -> 8 reduction (Figure 18)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 992 + C) (channels at `width_mult` 1).
        """
        b0 = self.conv(256, 1, name="branch0_0")(x, train=train)
        b0 = self.conv(384, 3, 2, 0, name="branch0_1")(b0, train=train)
        b1 = self.conv(256, 1, name="branch1_0")(x, train=train)
        b1 = self.conv(288, 3, 2, 0, name="branch1_1")(b1, train=train)
        b2 = self.conv(256, 1, name="branch2_0")(x, train=train)
        b2 = self.conv(288, 3, name="branch2_1")(b2, train=train)
        b2 = self.conv(320, 3, 2, 0, name="branch2_2")(b2, train=train)
        return concat(b0, b1, b2, max_pool3s2(x))


class InceptionResNetV2(Classifier):
    """Inception-ResNet-v2 in timm's layout.

    Attributes:
      width_mult: scales every channel count (`round_filters`); the residual 1×1 convs follow
        the scaled input width.
      depth_mult: scales the Block35/Block17/Block8 counts (10, 20, 9).
      drop_path_rate: stochastic depth of the last residual block, linear in block index (not
        in the paper or timm; 0 by default).
    """

    dropout_rate: float = 0.2

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        kw = dict(width_mult=self.width_mult, dtype=self.dtype)
        counts = [round_repeats(n, self.depth_mult) for n in (10, 20, 9)]
        rates = iter(drop_path_rates(self.drop_path_rate, sum(counts) + 1))

        def block(kind, scale, name, relu=True):
            return ResidualInception(
                kind=kind, scale=scale, relu=relu, drop_path_rate=next(rates), name=name, **kw
            )

        x = basic_conv(32, 3, 2, 0, name="conv2d_1a", **kw)(x, train=train)
        x = basic_conv(32, 3, 1, 0, name="conv2d_2a", **kw)(x, train=train)
        x = basic_conv(64, 3, name="conv2d_2b", **kw)(x, train=train)
        x = max_pool3s2(x)
        x = basic_conv(80, 1, name="conv2d_3b", **kw)(x, train=train)
        x = basic_conv(192, 3, 1, 0, name="conv2d_4a", **kw)(x, train=train)
        x = max_pool3s2(x)
        x = Mixed5b(name="mixed_5b", **kw)(x, train=train)
        for j in range(counts[0]):
            x = block("35", 0.17, f"block35_{j}")(x, train=train)
        x = Mixed6a(name="mixed_6a", **kw)(x, train=train)
        for j in range(counts[1]):
            x = block("17", 0.10, f"block17_{j}")(x, train=train)
        x = Mixed7a(name="mixed_7a", **kw)(x, train=train)
        for j in range(counts[2]):
            x = block("8", 0.20, f"block8_{j}")(x, train=train)
        x = block("8", 1.0, "block8_final", relu=False)(x, train=train)
        x = basic_conv(1536, 1, name="conv2d_7b", **kw)(x, train=train)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_PAPER = (
    "Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections"
)

register_family(
    "inception_v4",
    InceptionV4,
    {
        "inception_v4": dict(
            reference="timm:inception_v4",
            param_count=42_679_816,
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
        )
    },
    paper=_PAPER,
    year=2016,
    resolution=299,
    crop_pct=0.875,
    dropout=0.2,
    min_resolution=75,
    test_resolution=75,
    lacks=("drop_path_rate", "remat"),
)

register_family(
    "inception_v4",
    InceptionResNetV2,
    {
        "inception_resnet_v2": dict(
            reference="timm:inception_resnet_v2",
            param_count=55_843_464,
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
        )
    },
    paper=_PAPER,
    year=2016,
    resolution=299,
    crop_pct=0.8975,
    dropout=0.2,
    min_resolution=75,
    test_resolution=75,
    lacks=("remat",),
)
