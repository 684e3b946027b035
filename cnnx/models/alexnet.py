"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012, §3 and Figure 2).

Two variants of the same five-convolution, three-FC network:

`alexnet` is torchvision's single-tower AlexNet (after Krizhevsky's "One weird trick", 2014):
64-192-384-256-256 filters, no LRN, no groups, padding 2 in conv1. 61,100,840 parameters, equal
to `torchvision.models.alexnet` tensor for tensor.

`alexnet_original` is the paper's network on a 227×227 input (the paper says 224; only 227 makes
its 55×55 conv1 output come out with an 11×11 stride-4 kernel and no padding):

  layer  filters  kernel/stride  groups  followed by
  conv1  96       11×11 / 4      1       ReLU, LRN, max pool 3/2 (overlapping, §3.4)
  conv2  256      5×5  / 1 p2    2       ReLU, LRN, max pool 3/2
  conv3  384      3×3  / 1 p1    1       ReLU   (connects to both GPUs' conv2 maps)
  conv4  384      3×3  / 1 p1    2       ReLU
  conv5  256      3×3  / 1 p1    2       ReLU, max pool 3/2  -> 6×6×256
  fc6    4096     dropout 0.5 before, ReLU
  fc7    4096     dropout 0.5 before, ReLU
  fc8    1000

"groups 2" reproduces the split over two GPUs: a layer sees only the maps of its own GPU.
LRN uses the paper's n=5, k=2, α=1e-4, β=0.75; the paper's α multiplies the plain sum of squares,
while cnnx's `LocalResponseNorm` (torch convention) divides α by n, so it is passed as α·n.
Biases of conv2, conv4, conv5 and the FC layers start at 1 (§5).
Exact parameter count: 60,965,224 (the paper: "60 million parameters"); the FC layers hold
58,631,144 of them (96%).

Both variants end their convolutions with torchvision's adaptive 6×6 average pool (an identity
at the reference resolution), so the FC layers, and the parameter count, do not depend on the
input size.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, LocalResponseNorm
from cnnx.layers.torch_pool import adaptive_avg_pool, max_pool
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters


class ConvLayer(NamedTuple):
    """One convolution of an AlexNet-style feature extractor.

    `lrn` and `pool` apply after the ReLU; `lrn_first` orders them (AlexNet normalises then
    pools, ZFNet pools then normalises).
    """

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    lrn: bool = False
    pool: bool = False
    bias_one: bool = False


TORCHVISION = (
    ConvLayer(64, 11, 4, 2, pool=True),
    ConvLayer(192, 5, 1, 2, pool=True),
    ConvLayer(384, 3, 1, 1),
    ConvLayer(256, 3, 1, 1),
    ConvLayer(256, 3, 1, 1, pool=True),
)

ORIGINAL = (
    ConvLayer(96, 11, 4, 0, lrn=True, pool=True),
    ConvLayer(256, 5, 1, 2, groups=2, lrn=True, pool=True, bias_one=True),
    ConvLayer(384, 3, 1, 1),
    ConvLayer(384, 3, 1, 1, groups=2, bias_one=True),
    ConvLayer(256, 3, 1, 1, groups=2, pool=True, bias_one=True),
)

# The paper's LRN: k=2, n=5, α=1e-4 (on the undivided sum), β=0.75.
PAPER_LRN = dict(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)


class AlexNet(nn.Module):
    """Five convolutions and three fully connected layers (AlexNet, and ZFNet's retuned copy).

    Attributes:
      layers: the convolution table (`ConvLayer` rows).
      num_classes: classifier outputs; 0 returns the fc7 features.
      fc_features: width of fc6 and fc7.
      pool_ceil: Caffe-style ceil-mode pooling (ZFNet) instead of torch's floor mode.
      lrn_first: LRN before the max pool (AlexNet) or after it (ZFNet).
      bias_one_fc: start the FC biases at 1 (AlexNet paper, §5).
      width_mult: scales every conv and FC width (`round_filters`).
      depth_mult: accepted so every family takes it; AlexNet has no repeated blocks to scale.
      dropout_rate: dropout before fc6 and fc7 (0.5 in the paper).
      dtype: compute dtype; parameters stay float32.
    """

    layers: Sequence[ConvLayer] = TORCHVISION
    num_classes: int = 1000
    fc_features: int = 4096
    pool_ceil: bool = False
    lrn_first: bool = True
    bias_one_fc: bool = False
    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        for i, layer in enumerate(self.layers):
            x = nn.Conv(
                round_filters(layer.features, self.width_mult),
                (layer.kernel, layer.kernel),
                strides=(layer.stride, layer.stride),
                padding=[(layer.padding, layer.padding)] * 2,
                feature_group_count=layer.groups,
                bias_init=nn.initializers.ones if layer.bias_one else nn.initializers.zeros,
                dtype=self.dtype,
                name=f"conv{i + 1}",
            )(x)
            x = nn.relu(x)
            if layer.lrn and self.lrn_first:
                x = LocalResponseNorm(**PAPER_LRN)(x)
            if layer.pool:
                x = max_pool(x, 3, 2, ceil_mode=self.pool_ceil)
            if layer.lrn and not self.lrn_first:
                x = LocalResponseNorm(**PAPER_LRN)(x)
        x = adaptive_avg_pool(x, 6)
        # Flatten in NCHW order so torchvision's fc6 weight converts without a permutation.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        fc_bias = nn.initializers.ones if self.bias_one_fc else nn.initializers.zeros
        width = round_filters(self.fc_features, self.width_mult)
        for name in ("fc6", "fc7"):
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = nn.relu(nn.Dense(width, bias_init=fc_bias, dtype=self.dtype, name=name)(x))
        return ClassifierHead(self.num_classes, dtype=self.dtype, name="head")(x, train=train)


_PAPER = "Krizhevsky et al. 2012, ImageNet Classification with Deep CNNs"

register_family(
    "alexnet",
    AlexNet,
    {
        "alexnet": dict(
            kwargs=dict(layers=TORCHVISION),
            reference="torchvision:alexnet",
            param_count=61_100_840,
            top1=(56.522, "torchvision IMAGENET1K_V1 weights"),
            min_resolution=63,
            test_resolution=63,
        ),
        "alexnet_original": dict(
            kwargs=dict(layers=ORIGINAL, bias_one_fc=True),
            param_count=60_965_224,
            resolution=227,
            min_resolution=67,
            test_resolution=67,
        ),
    },
    paper=_PAPER,
    year=2012,
    dropout=0.5,
)
