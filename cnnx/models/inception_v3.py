"""Inception v3 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
CVPR 2016; arXiv 1512.00567, 2015), Table 1 and Figures 5-7, in torchvision's layout.

  stem      3×3/2 32, 3×3 32, 3×3 64, max pool 3/2, 1×1 80, 3×3 192, max pool 3/2  (35×35×192)
  Mixed_5b-d   3 × InceptionA (Figure 5: 5×5 and double 3×3 branches), pool proj 32, 64, 64
  Mixed_6a     InceptionB (grid reduction to 17×17)
  Mixed_6b-e   4 × InceptionC (Figure 6: factorised 1×7 / 7×1), 7×7 width 128, 160, 160, 192
  AuxLogits    after Mixed_6e: avg pool 5/3, 1×1 128, 5×5 768, linear  (train mode only)
  Mixed_7a     InceptionD (grid reduction to 8×8)
  Mixed_7b-c   2 × InceptionE (Figure 7: expanded 1×3 / 3×1 filter banks)
  head         global average pool, dropout 0.5, linear 2048 -> 1000

Every convolution is followed by BatchNorm (eps 1e-3) and ReLU; the auxiliary head is built by
default (`aux_logits=True`, as torchvision builds it). 299×299 input, 75×75 the smallest
accepted. Submodule names are torchvision's, so its checkpoints convert by
name. `depth_mult` scales the module count of the three repeated stages (3, 4, 2); fewer keep
the first modules, more repeat the last.

The auxiliary head's 5/3 average pool and valid 5×5 convolution need a Mixed_6e map of at least
17×17 (299 px input gives exactly 17×17); on smaller maps torchvision fails in train mode. cnnx
instead pools such maps adaptively to 5×5 first, so training at small test resolutions works; at
full resolution the head is torchvision's exactly. In train mode the model returns
`(logits, (aux,))`.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead
from cnnx.layers.dense import Dense
from cnnx.layers.pool import adaptive_avg_pool
from cnnx.models._inception_blocks import (
    InceptionBlock,
    avg_pool3,
    basic_conv,
    concat,
    max_pool3s2,
)
from cnnx.models.contract import Classifier
from cnnx.models.registry import INCEPTION_MEAN, INCEPTION_STD, register_family
from cnnx.models.scaling import stage_configs


class InceptionA(InceptionBlock):
    """Inception v3's 35×35 module (Figure 5): 1×1, 5×5, double 3×3 and pool branches."""

    pool_features: int = 32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, 224 + pool_features) (channels at `width_mult` 1).
        """
        b1 = self.conv(64, 1, name="branch1x1")(x, train=train)
        b5 = self.conv(48, 1, name="branch5x5_1")(x, train=train)
        b5 = self.conv(64, 5, name="branch5x5_2")(b5, train=train)
        b3 = self.conv(64, 1, name="branch3x3dbl_1")(x, train=train)
        b3 = self.conv(96, 3, name="branch3x3dbl_2")(b3, train=train)
        b3 = self.conv(96, 3, name="branch3x3dbl_3")(b3, train=train)
        bp = self.conv(self.pool_features, 1, name="branch_pool")(
            avg_pool3(x, count_include_pad=True), train=train
        )
        return concat(b1, b5, b3, bp)


class InceptionB(InceptionBlock):
    """Inception v3's grid reduction 35 -> 17 (Mixed_6a; Figure 10)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 480 + C) (channels at `width_mult` 1).
        """
        b3 = self.conv(384, 3, 2, 0, name="branch3x3")(x, train=train)
        bd = self.conv(64, 1, name="branch3x3dbl_1")(x, train=train)
        bd = self.conv(96, 3, name="branch3x3dbl_2")(bd, train=train)
        bd = self.conv(96, 3, 2, 0, name="branch3x3dbl_3")(bd, train=train)
        return concat(b3, bd, max_pool3s2(x))


class InceptionC(InceptionBlock):
    """Inception v3's 17×17 module with factorised 1×7 / 7×1 convolutions (Figure 6)."""

    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, 768) (channels at `width_mult` 1).
        """
        c7 = self.channels_7x7
        b1 = self.conv(192, 1, name="branch1x1")(x, train=train)
        b7 = self.conv(c7, 1, name="branch7x7_1")(x, train=train)
        b7 = self.conv(c7, (1, 7), name="branch7x7_2")(b7, train=train)
        b7 = self.conv(192, (7, 1), name="branch7x7_3")(b7, train=train)
        bd = self.conv(c7, 1, name="branch7x7dbl_1")(x, train=train)
        bd = self.conv(c7, (7, 1), name="branch7x7dbl_2")(bd, train=train)
        bd = self.conv(c7, (1, 7), name="branch7x7dbl_3")(bd, train=train)
        bd = self.conv(c7, (7, 1), name="branch7x7dbl_4")(bd, train=train)
        bd = self.conv(192, (1, 7), name="branch7x7dbl_5")(bd, train=train)
        bp = self.conv(192, 1, name="branch_pool")(
            avg_pool3(x, count_include_pad=True), train=train
        )
        return concat(b1, b7, bd, bp)


class InceptionD(InceptionBlock):
    """Inception v3's grid reduction 17 -> 8 (Mixed_7a; Figure 10)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, 512 + C) (channels at `width_mult` 1).
        """
        b3 = self.conv(192, 1, name="branch3x3_1")(x, train=train)
        b3 = self.conv(320, 3, 2, 0, name="branch3x3_2")(b3, train=train)
        b7 = self.conv(192, 1, name="branch7x7x3_1")(x, train=train)
        b7 = self.conv(192, (1, 7), name="branch7x7x3_2")(b7, train=train)
        b7 = self.conv(192, (7, 1), name="branch7x7x3_3")(b7, train=train)
        b7 = self.conv(192, 3, 2, 0, name="branch7x7x3_4")(b7, train=train)
        return concat(b3, b7, max_pool3s2(x))


class InceptionE(InceptionBlock):
    """Inception v3's 8×8 module with expanded 1×3 / 3×1 filter banks (Figure 7)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The block's branches, concatenated along the channels.

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, 2048) (channels at `width_mult` 1).
        """
        b1 = self.conv(320, 1, name="branch1x1")(x, train=train)
        b3 = self.conv(384, 1, name="branch3x3_1")(x, train=train)
        b3 = concat(
            self.conv(384, (1, 3), name="branch3x3_2a")(b3, train=train),
            self.conv(384, (3, 1), name="branch3x3_2b")(b3, train=train),
        )
        bd = self.conv(448, 1, name="branch3x3dbl_1")(x, train=train)
        bd = self.conv(384, 3, name="branch3x3dbl_2")(bd, train=train)
        bd = concat(
            self.conv(384, (1, 3), name="branch3x3dbl_3a")(bd, train=train),
            self.conv(384, (3, 1), name="branch3x3dbl_3b")(bd, train=train),
        )
        bp = self.conv(192, 1, name="branch_pool")(
            avg_pool3(x, count_include_pad=True), train=train
        )
        return concat(b1, b3, bd, bp)


class InceptionAux(InceptionBlock):
    """Inception v3's auxiliary classifier (§4; torchvision's `InceptionAux`)."""

    num_classes: int = 1000

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The auxiliary classifier after Mixed_6e.

        Args:
          x: (B, H, W, 768) features.
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, num_classes) logits.
        """
        if (x.shape[1] - 5) // 3 + 1 >= 5 and (x.shape[2] - 5) // 3 + 1 >= 5:
            x = nn.avg_pool(x, (5, 5), strides=(3, 3))
        else:  # too small for torchvision's head (see the module docstring)
            x = adaptive_avg_pool(x, 5)
        x = self.conv(128, 1, name="conv0")(x, train=train)
        x = self.conv(768, 5, padding=0, name="conv1")(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


STAGE5 = (32, 64, 64)  # InceptionA pool features
STAGE6 = (128, 160, 160, 192)  # InceptionC 7×7 widths
STAGE7 = (None, None)  # InceptionE


class InceptionV3(Classifier):
    """Inception v3 in torchvision's layout.

    Attributes:
      aux_logits: build the auxiliary classifier (run in train mode only).
      num_classes: classifier outputs; 0 returns pooled features (and no auxiliary output).
      width_mult: scales every channel count (`round_filters`).
      depth_mult: scales the module counts of stages 5, 6 and 7.
      dropout_rate: dropout before the classifier (0.5).
    """

    aux_logits: bool = True
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        kw = dict(width_mult=self.width_mult, dtype=self.dtype)
        conv = functools.partial(basic_conv, **kw)
        x = conv(32, 3, 2, 0, name="Conv2d_1a_3x3")(x, train=train)
        x = conv(32, 3, 1, 0, name="Conv2d_2a_3x3")(x, train=train)
        x = conv(64, 3, name="Conv2d_2b_3x3")(x, train=train)
        x = max_pool3s2(x)
        x = conv(80, 1, name="Conv2d_3b_1x1")(x, train=train)
        x = conv(192, 3, 1, 0, name="Conv2d_4a_3x3")(x, train=train)
        x = max_pool3s2(x)
        for j, pf in enumerate(stage_configs(STAGE5, self.depth_mult)):
            x = InceptionA(pool_features=pf, name=_mixed(5, j), **kw)(x, train=train)
        x = InceptionB(name="Mixed_6a", **kw)(x, train=train)
        for j, c7 in enumerate(stage_configs(STAGE6, self.depth_mult)):
            x = InceptionC(channels_7x7=c7, name=_mixed(6, j), **kw)(x, train=train)
        use_aux = self.aux_logits and train and self.num_classes > 0
        aux = ()
        if self.aux_logits and self.num_classes > 0 and (use_aux or self.is_initializing()):
            # Built in every mode (its parameters always exist); run only in training.
            aux = (
                InceptionAux(num_classes=self.num_classes, name="AuxLogits", **kw)(x, train=train),
            )
        x = InceptionD(name="Mixed_7a", **kw)(x, train=train)
        for j, _ in enumerate(stage_configs(STAGE7, self.depth_mult)):
            x = InceptionE(name=_mixed(7, j), **kw)(x, train=train)
        logits = ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )
        return (logits, aux) if use_aux else logits


def _mixed(stage: int, j: int) -> str:
    """torchvision's name of module j of a repeated stage: Mixed_5b, Mixed_5c, ..."""
    return f"Mixed_{stage}{chr(ord('b') + j)}"


register_family(
    "inception_v3",
    InceptionV3,
    {
        "inception_v3": dict(
            kwargs=dict(aux_logits=True),
            reference="torchvision:inception_v3",
            param_count=27_161_264,
            # The pretrained builder sets transform_input=True: forward() maps ImageNet-
            # normalised input to (x - 0.5) / 0.5, so the weights expect that normalisation.
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            top1=(77.294, "torchvision IMAGENET1K_V1 weights"),
        )
    },
    paper="Szegedy et al. 2015, Rethinking the Inception Architecture (Table 1)",
    year=2015,
    resolution=299,
    crop_pct=0.875,
    dropout=0.5,
    min_resolution=75,
    test_resolution=75,
    lacks=("drop_path_rate", "remat"),
)
