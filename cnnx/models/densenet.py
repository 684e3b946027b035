"""DenseNet (Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017; Table 1 for ImageNet, §3 / Table 2 for CIFAR).

Every layer of a dense block sees the concatenation of all earlier feature maps of the block
and adds `growth_rate` (k) new ones. Layers are pre-activation, BN-ReLU-conv: a 1×1
"bottleneck" to `bn_size * k` channels, then a 3×3 to k channels ("DenseNet-B"). Between
blocks a transition layer (BN-ReLU-conv 1×1, 2×2 average pool) keeps `floor(compression * C)`
channels ("-C"; 0.5 in DenseNet-BC). ImageNet models follow torchvision's layout (7×7 stem
with BN-ReLU and a 3×3 max pool; a final BN-ReLU before pooling), so its weights convert one
to one:

  densenet121  k=32, blocks (6, 12, 24, 16)
  densenet169  k=32, blocks (6, 12, 32, 32)
  densenet201  k=32, blocks (6, 12, 48, 32)
  densenet161  k=48, blocks (6, 12, 36, 24), 96 stem filters
  densenet264  k=32, blocks (6, 12, 64, 48)  (Table 1; no torchvision model)

`densenet_bc100_cifar` is the paper's CIFAR DenseNet-BC with L=100, k=12: a 3×3 stem of 2k
filters, three blocks of 16 bottleneck layers, compression 0.5.

Memory: `memory_efficient=True` recomputes the concat-BN-ReLU-conv1×1 bottleneck in the
backward pass (`nn.remat`), as torchvision's `memory_efficient` and Pleiss et al. 2017 do;
outputs and gradients are unchanged. On XLA:CPU it saves memory only when compiled with
`cnnx.backends.remat_compiler_options()`, as the trainer does with `remat` on (docs/xla_cpu.md).
`remat=True`, the option every family shares, recomputes whole dense layers and so subsumes it.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, ConvNormAct, batch_norm, maybe_remat, torch_padding
from cnnx.layers.conv import Conv
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters, round_repeats


class PreActConv(nn.Module):
    """Concatenate the inputs, then BN, ReLU and a convolution (submodules `bn`, `conv`).

    `train` is a module attribute (not a call argument) so that `nn.remat` of this module needs
    no static arguments; the inputs are positional so the concatenation is recomputed rather
    than stored when the module is rematerialised.
    """

    features: int
    kernel_size: int
    train: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, *inputs):
        """BN-ReLU-conv of the inputs' concatenation.

        Args:
          *inputs: (B, H, W, C_i) maps, concatenated along the channels.

        Returns:
          (B, H, W, features); with `train`, BatchNorm uses batch statistics and updates its
          running averages.
        """
        x = inputs[0] if len(inputs) == 1 else jnp.concatenate(inputs, axis=-1)
        x = batch_norm(self.train, dtype=self.dtype, name="bn")(x)
        x = nn.relu(x)
        k = self.kernel_size
        return Conv(
            self.features,
            (k, k),
            padding=torch_padding(k),
            use_bias=False,
            dtype=self.dtype,
            kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
            name="conv",
        )(x)


class DenseLayer(nn.Module):
    """Bottleneck 1×1 (`conv1`, `bn_size * k` channels) then 3×3 (`conv2`, k channels)."""

    growth_rate: int
    bn_size: int = 4
    memory_efficient: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: Sequence[jnp.ndarray], *, train: bool):
        """One dense layer on the concatenation of all earlier maps.

        Args:
          x: the block's earlier maps, each (B, H, W, C_i) (DenseLayer takes them as `features`).
          train: BatchNorm uses batch statistics and updates its running averages.

        Returns:
          (B, H, W, growth_rate): the new maps only (the caller concatenates).
        """
        bottleneck = nn.remat(PreActConv) if self.memory_efficient else PreActConv
        y = bottleneck(self.bn_size * self.growth_rate, 1, train, self.dtype, name="conv1")(
            *features
        )
        return PreActConv(self.growth_rate, 3, train, self.dtype, name="conv2")(y)


class DenseNet(Classifier):
    """DenseNet-BC for ImageNet (torchvision layout) or CIFAR.

    Attributes:
      growth_rate: k, channels added by each dense layer.
      block_config: dense layers per block.
      num_init_features: stem filters (2k in the paper; 96 for DenseNet-161).
      bn_size: bottleneck width as a multiple of k (4 in the paper).
      compression: fraction of channels kept by each transition (θ, 0.5 for -BC).
      stem: 'imagenet' (7×7/2 conv, BN-ReLU, 3×3/2 max pool) or 'cifar' (one 3×3 conv).
      width_mult: scales the growth rate and the stem filters (`round_filters`).
      depth_mult: scales every block's layer count (`round_repeats`).
      memory_efficient: recompute the bottlenecks in the backward pass (see module docstring).
    """

    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    compression: float = 0.5
    stem: str = "imagenet"
    memory_efficient: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        k = round_filters(self.growth_rate, self.width_mult)
        channels = round_filters(self.num_init_features, self.width_mult)
        if self.stem == "imagenet":
            x = ConvNormAct(channels, 7, 2, dtype=self.dtype, name="stem")(x, train=train)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        elif self.stem == "cifar":
            # Pre-activation network: the first dense layer's BN-ReLU follows the stem conv.
            x = ConvNormAct(channels, 3, norm=None, act=None, dtype=self.dtype, name="stem")(
                x, train=train
            )
        else:
            raise ValueError(f"DenseNet stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        repeats = [round_repeats(r, self.depth_mult) for r in self.block_config]
        for i, n in enumerate(repeats):
            features = [x]
            for j in range(n):
                features.append(
                    maybe_remat(DenseLayer, self.remat)(
                        k,
                        self.bn_size,
                        self.memory_efficient,
                        self.dtype,
                        name=f"block{i + 1}_layer{j}",
                    )(features, train=train)
                )
            x = jnp.concatenate(features, axis=-1)
            channels += n * k
            if i < len(repeats) - 1:
                channels = math.floor(channels * self.compression)
                x = PreActConv(channels, 1, train, self.dtype, name=f"transition{i + 1}")(x)
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="final_norm")(x))
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks"

# name: (growth rate, blocks, stem filters, exact count, torchvision IMAGENET1K_V1 top-1)
IMAGENET_TABLE = {
    "densenet121": (32, (6, 12, 24, 16), 64, 7_978_856, 74.434),
    "densenet161": (48, (6, 12, 36, 24), 96, 28_681_000, 77.138),
    "densenet169": (32, (6, 12, 32, 32), 64, 14_149_480, 75.600),
    "densenet201": (32, (6, 12, 48, 32), 64, 20_013_928, 76.896),
    "densenet264": (32, (6, 12, 64, 48), 64, 33_337_704, None),
}

register_family(
    "densenet",
    DenseNet,
    {
        name: dict(
            kwargs=dict(growth_rate=k, block_config=blocks, num_init_features=stem),
            reference=f"torchvision:{name}" if top1 else "",
            param_count=count,
            top1=(top1, "torchvision IMAGENET1K_V1 weights") if top1 else None,
        )
        for name, (k, blocks, stem, count, top1) in IMAGENET_TABLE.items()
    },
    paper=_PAPER,
    year=2017,
    test_resolution=32,
    lacks=("drop_path_rate",),
)

# DenseNet-BC (L=100, k=12) for CIFAR: (100 - 4) / 6 = 16 bottleneck layers per block.
register_family(
    "densenet",
    DenseNet,
    {
        "densenet_bc100_cifar": dict(
            kwargs=dict(
                growth_rate=12,
                block_config=(16, 16, 16),
                num_init_features=24,
                stem="cifar",
                num_classes=10,
            ),
            param_count=769_162,
        )
    },
    paper=_PAPER + " §3, Table 2",
    year=2017,
    resolution=32,
    crop_pct=1.0,
    num_classes=10,
    min_resolution=8,
    test_resolution=16,
    lacks=("drop_path_rate",),
)
