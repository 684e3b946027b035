"""Network in Network (Lin, Chen & Yan, "Network In Network", ICLR 2014; arXiv 1312.4400, 2013).

An "mlpconv" block is a spatial convolution followed by 1×1 convolutions (a small MLP shared over
positions, §3.1), each with ReLU. The last block outputs one map per class, and global average
pooling replaces the fully connected classifier (§3.2), so the network has no FC layer.

`nin` follows the authors' NIN-ImageNet model in the Caffe Model Zoo (224×224 input, 4 mlpconv
blocks, max pools 3/2 in Caffe's ceil mode, dropout 0.5 after the third block):

  block  spatial conv            1×1 convs      then
  1      96 @ 11×11 / 4          96, 96         max pool 3/2
  2      256 @ 5×5, pad 2        256, 256       max pool 3/2
  3      384 @ 3×3, pad 1        384, 384       max pool 3/2, dropout
  4      1024 @ 3×3, pad 1       1024, classes  global average pool

`nin_cifar` is the paper's CIFAR-10 model (§4.2; the authors' published cifar10 definition:
3 mlpconv blocks of 192 maps, max then average pooling 3/2, dropout 0.5 between blocks):

  1      192 @ 5×5, pad 2        160, 96        max pool 3/2, dropout
  2      192 @ 5×5, pad 2        192, 192       avg pool 3/2, dropout
  3      192 @ 3×3, pad 1        192, classes   global average pool

`depth_mult` scales the number of 1×1 layers per block (fewer keep the block's last ones, so
each block's output width is unchanged; extra ones repeat the block's last hidden width);
`width_mult` scales every width except the class maps. `num_classes=0` drops the class-map
convolution and returns the pooled features of the last hidden 1×1 layer.
"""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers.conv import Conv
from cnnx.layers.pool import torch_max_pool
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters, round_repeats


class MlpConv(NamedTuple):
    """One mlpconv block: a k×k convolution, then 1×1 convolutions, then a pool.

    `hidden` lists the 1×1 widths; in the last block the final entry is replaced by the class
    count. `pool` is 'max', 'avg' or 'global'; `dropout` applies after the pool.
    """

    features: int
    kernel: int
    stride: int
    padding: int
    hidden: tuple[int, ...]
    pool: str
    dropout: bool = False


IMAGENET = (
    MlpConv(96, 11, 4, 0, (96, 96), "max"),
    MlpConv(256, 5, 1, 2, (256, 256), "max"),
    MlpConv(384, 3, 1, 1, (384, 384), "max", dropout=True),
    MlpConv(1024, 3, 1, 1, (1024, 1000), "global"),
)

CIFAR = (
    MlpConv(192, 5, 1, 2, (160, 96), "max", dropout=True),
    MlpConv(192, 5, 1, 2, (192, 192), "avg", dropout=True),
    MlpConv(192, 3, 1, 1, (192, 10), "global"),
)


class NIN(Classifier):
    """Network in Network.

    Attributes:
      blocks: the mlpconv table.
      num_classes: class maps of the last block; 0 returns pooled features.
      width_mult: scales every convolution's width except the class maps.
      depth_mult: scales the number of 1×1 convolutions per block.
      dropout_rate: dropout between blocks where the table asks for it (0.5 in the paper).
      relu_class_maps: a ReLU on the class maps before pooling, as the authors' Caffe files
        have; off by default, so logits can be negative and every class gets a gradient.
    """

    blocks: Sequence[MlpConv] = IMAGENET
    dropout_rate: float = 0.5
    relu_class_maps: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
        for b, block in enumerate(self.blocks):
            last = b == len(self.blocks) - 1
            hidden = list(block.hidden[:-1]) if last else list(block.hidden)
            n = round_repeats(len(hidden), self.depth_mult)
            # Fewer layers keep the block's last ones, so its output width (what the next
            # block and the head see) stays as designed; more repeat the last hidden width.
            hidden = hidden[-n:] if n <= len(hidden) else hidden + [hidden[-1]] * (n - len(hidden))
            widths = [block.features, *hidden]
            kernels = [block.kernel] + [1] * len(hidden)
            for j, (c, k) in enumerate(zip(widths, kernels)):
                stride, pad = (block.stride, block.padding) if j == 0 else (1, 0)
                x = Conv(
                    round_filters(c, self.width_mult),
                    (k, k),
                    strides=(stride, stride),
                    padding=[(pad, pad)] * 2,
                    kernel_init=init,
                    dtype=self.dtype,
                    name=f"block{b + 1}_conv{j}",
                )(x)
                x = nn.relu(x)
            if last:
                break
            if block.pool == "max":
                x = torch_max_pool(x, 3, 2, ceil_mode=True)
            else:
                x = _avg_pool_ceil(x)
            if block.dropout:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        if self.num_classes == 0:
            return jnp.mean(x, axis=(1, 2))
        # The class maps: a 1×1 convolution, then global average pooling gives the logits.
        x = Conv(self.num_classes, (1, 1), dtype=self.dtype, name="head")(x)
        return jnp.mean(nn.relu(x) if self.relu_class_maps else x, axis=(1, 2))


def _avg_pool_ceil(x):
    """Caffe's 3/2 average pool in ceil mode: partial windows at the edge average what they
    cover (Caffe divides by the window clipped to the padded input; with no padding, by the
    valid part)."""
    pads = []
    for size in x.shape[1:3]:
        out = -(-(size - 3) // 2) + 1
        pads.append((0, max(0, (out - 1) * 2 + 3 - size)))
    return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=pads, count_include_pad=False)


register_family(
    "nin",
    NIN,
    {
        "nin": dict(
            kwargs=dict(blocks=IMAGENET),
            param_count=7_595_176,
            min_resolution=39,
            test_resolution=39,
        ),
        "nin_cifar": dict(
            kwargs=dict(blocks=CIFAR, num_classes=10),
            param_count=966_986,
            resolution=32,
            crop_pct=1.0,
            num_classes=10,
            min_resolution=4,
            test_resolution=8,
        ),
    },
    paper="Lin et al. 2013, Network In Network",
    year=2013,
    dropout=0.5,
    lacks=("drop_path_rate", "remat"),
)
