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

Every convolution is followed by BatchNorm (eps 1e-3) and ReLU. 27,161,264 parameters with the
auxiliary head (`aux_logits=True`, as torchvision builds it), 23,834,568 without; 299×299 input,
75×75 the smallest accepted. Submodule names are torchvision's, so its checkpoints convert by
name. `depth_mult` scales the module count of the three repeated stages (3, 4, 2); fewer keep
the first modules, more repeat the last.

The auxiliary head's 5/3 average pool and valid 5×5 convolution need a Mixed_6e map of at least
17×17 (299 px input gives exactly 17×17); on smaller maps torchvision fails in train mode. cnnx
instead pools such maps adaptively to 5×5 first, so training at small test resolutions works; at
full resolution the head is torchvision's exactly. In train mode the model returns
`(logits, (aux,))`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, ConvNormAct
from cnnx.layers.cpu_pool import max_pool
from cnnx.layers.torch_pool import adaptive_avg_pool
from cnnx.models.googlenet import stage_configs
from cnnx.models.registry import INCEPTION_MEAN, INCEPTION_STD, register_family
from cnnx.models.scaling import round_filters


def basic_conv(
    features, kernel, strides=1, padding="torch", *, width_mult, dtype, bn_epsilon=1e-3, name
):
    """Conv, BatchNorm (eps 1e-3, TensorFlow's), ReLU with the width scaled: torchvision's
    `BasicConv2d`, timm's `ConvNormAct`. `padding` 'torch' is k//2 per side, 0 is none."""
    return ConvNormAct(
        round_filters(features, width_mult),
        kernel,
        strides,
        padding=padding,
        bn_epsilon=bn_epsilon,
        dtype=dtype,
        name=name,
    )


class _Block(nn.Module):
    """Base of the Inception blocks: a conv-BN-ReLU factory with scaled widths."""

    width_mult: float = 1.0
    dtype: Any = jnp.float32

    def conv(self, features, kernel, strides=1, padding="torch", *, name):
        return basic_conv(
            features,
            kernel,
            strides,
            padding,
            width_mult=self.width_mult,
            dtype=self.dtype,
            name=name,
        )


def avg_pool3(x, count_include_pad: bool = True):
    """3×3 stride-1 average pool with padding 1 (torch's `F.avg_pool2d(x, 3, 1, 1)`)."""
    return nn.avg_pool(
        x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=count_include_pad
    )


def max_pool3s2(x):
    """3×3 stride-2 max pool without padding (torch's `F.max_pool2d(x, 3, 2)`)."""
    return max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(_Block):
    pool_features: int = 32

    @nn.compact
    def __call__(self, x, *, train: bool):
        b1 = self.conv(64, 1, name="branch1x1")(x, train=train)
        b5 = self.conv(48, 1, name="branch5x5_1")(x, train=train)
        b5 = self.conv(64, 5, name="branch5x5_2")(b5, train=train)
        b3 = self.conv(64, 1, name="branch3x3dbl_1")(x, train=train)
        b3 = self.conv(96, 3, name="branch3x3dbl_2")(b3, train=train)
        b3 = self.conv(96, 3, name="branch3x3dbl_3")(b3, train=train)
        bp = self.conv(self.pool_features, 1, name="branch_pool")(avg_pool3(x), train=train)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
    @nn.compact
    def __call__(self, x, *, train: bool):
        b3 = self.conv(384, 3, 2, 0, name="branch3x3")(x, train=train)
        bd = self.conv(64, 1, name="branch3x3dbl_1")(x, train=train)
        bd = self.conv(96, 3, name="branch3x3dbl_2")(bd, train=train)
        bd = self.conv(96, 3, 2, 0, name="branch3x3dbl_3")(bd, train=train)
        return jnp.concatenate([b3, bd, max_pool3s2(x)], axis=-1)


class InceptionC(_Block):
    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x, *, train: bool):
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
        bp = self.conv(192, 1, name="branch_pool")(avg_pool3(x), train=train)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
    @nn.compact
    def __call__(self, x, *, train: bool):
        b3 = self.conv(192, 1, name="branch3x3_1")(x, train=train)
        b3 = self.conv(320, 3, 2, 0, name="branch3x3_2")(b3, train=train)
        b7 = self.conv(192, 1, name="branch7x7x3_1")(x, train=train)
        b7 = self.conv(192, (1, 7), name="branch7x7x3_2")(b7, train=train)
        b7 = self.conv(192, (7, 1), name="branch7x7x3_3")(b7, train=train)
        b7 = self.conv(192, 3, 2, 0, name="branch7x7x3_4")(b7, train=train)
        return jnp.concatenate([b3, b7, max_pool3s2(x)], axis=-1)


class InceptionE(_Block):
    @nn.compact
    def __call__(self, x, *, train: bool):
        b1 = self.conv(320, 1, name="branch1x1")(x, train=train)
        b3 = self.conv(384, 1, name="branch3x3_1")(x, train=train)
        b3 = jnp.concatenate(
            [
                self.conv(384, (1, 3), name="branch3x3_2a")(b3, train=train),
                self.conv(384, (3, 1), name="branch3x3_2b")(b3, train=train),
            ],
            axis=-1,
        )
        bd = self.conv(448, 1, name="branch3x3dbl_1")(x, train=train)
        bd = self.conv(384, 3, name="branch3x3dbl_2")(bd, train=train)
        bd = jnp.concatenate(
            [
                self.conv(384, (1, 3), name="branch3x3dbl_3a")(bd, train=train),
                self.conv(384, (3, 1), name="branch3x3dbl_3b")(bd, train=train),
            ],
            axis=-1,
        )
        bp = self.conv(192, 1, name="branch_pool")(avg_pool3(x), train=train)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(_Block):
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x, *, train: bool):
        if (x.shape[1] - 5) // 3 + 1 >= 5 and (x.shape[2] - 5) // 3 + 1 >= 5:
            x = nn.avg_pool(x, (5, 5), strides=(3, 3))
        else:  # too small for torchvision's head (see the module docstring)
            x = adaptive_avg_pool(x, 5)
        x = self.conv(128, 1, name="conv0")(x, train=train)
        x = self.conv(768, 5, padding=0, name="conv1")(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


STAGE5 = (32, 64, 64)  # InceptionA pool features
STAGE6 = (128, 160, 160, 192)  # InceptionC 7×7 widths
STAGE7 = (None, None)  # InceptionE


class InceptionV3(nn.Module):
    """Inception v3 in torchvision's layout.

    Attributes:
      aux_logits: build the auxiliary classifier (run in train mode only).
      num_classes: classifier outputs; 0 returns pooled features (and no auxiliary output).
      width_mult: scales every channel count (`round_filters`).
      depth_mult: scales the module counts of stages 5, 6 and 7.
      dropout_rate: dropout before the classifier (0.5).
      dtype: compute dtype; parameters stay float32.
    """

    aux_logits: bool = True
    num_classes: int = 1000
    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32

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
)
