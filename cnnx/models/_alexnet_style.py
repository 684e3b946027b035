"""The AlexNet-style network shared by AlexNet and ZFNet, and the paper's LRN (also VGG-LRN's).

Krizhevsky, Sutskever & Hinton 2012 (§3, Figure 2): convolutions given as a table of
`ConvLayer` rows, each followed by ReLU and optionally LRN and an overlapping 3/2 max pool,
then torchvision's adaptive 6×6 average pool, fc6 and fc7 with dropout, and the classifier.
The families (`cnnx.models.alexnet`, `cnnx.models.zfnet`) subclass `AlexNetStyle` with their
tables; submodule names (`conv1`..`conv5`, `fc6`, `fc7`, `head`) are the same for all.
Private to `cnnx.models`: family modules share it instead of importing each other.
"""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers.conv import Conv
from cnnx.layers.dense import Dense
from cnnx.layers.head import ClassifierHead
from cnnx.layers.norm import LocalResponseNorm
from cnnx.layers.pool import adaptive_avg_pool, torch_max_pool
from cnnx.models.contract import Classifier
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


# The paper's LRN: k=2, n=5, α=1e-4 (on the undivided sum), β=0.75.
PAPER_LRN = dict(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)


class AlexNetStyle(Classifier):
    """Five convolutions and three fully connected layers: the network of AlexNet and ZFNet.

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
    """

    layers: Sequence[ConvLayer] = ()
    fc_features: int = 4096
    pool_ceil: bool = False
    lrn_first: bool = True
    bias_one_fc: bool = False
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        for i, layer in enumerate(self.layers):
            x = Conv(
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
                x = torch_max_pool(x, 3, 2, ceil_mode=self.pool_ceil)
            if layer.lrn and not self.lrn_first:
                x = LocalResponseNorm(**PAPER_LRN)(x)
        x = adaptive_avg_pool(x, 6)
        # Flatten in NCHW order so torchvision's fc6 weight converts without a permutation.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        fc_bias = nn.initializers.ones if self.bias_one_fc else nn.initializers.zeros
        width = round_filters(self.fc_features, self.width_mult)
        for name in ("fc6", "fc7"):
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = nn.relu(Dense(width, bias_init=fc_bias, dtype=self.dtype, name=name)(x))
        return ClassifierHead(self.num_classes, dtype=self.dtype, name="head")(x, train=train)
