"""Building blocks shared by the model families."""

from cnnx.layers.conv import ConvNormAct, conv_padding, torch_padding
from cnnx.layers.drop import DropPath, drop_path_rates
from cnnx.layers.head import ClassifierHead
from cnnx.layers.norm import LocalResponseNorm, batch_norm
from cnnx.layers.remat import maybe_remat

__all__ = [
    "ClassifierHead",
    "ConvNormAct",
    "DropPath",
    "LocalResponseNorm",
    "batch_norm",
    "conv_padding",
    "drop_path_rates",
    "maybe_remat",
    "torch_padding",
]
