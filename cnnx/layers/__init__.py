"""Building blocks shared by the model families.

- `conv`: padding conventions, `Conv` (`nn.Conv` on cnnx's CPU convolutions), `ConvNormAct`.
- `norm`: BatchNorm (synchronised over the global batch) and local response normalisation.
- `pool`: flax- and torch-style max pooling, adaptive average pooling.
- `drop`, `head`, `se`, `mbconv`, `transformer`: drop path, classifier head, squeeze-and-
  excitation, inverted residuals, attention blocks.
- `remat`: per-block rematerialisation.

XLA:CPU's custom gradients live in `cnnx.backends.cpu`, reached only through `conv` and `pool`.
"""

from cnnx.layers.conv import Conv, ConvNormAct, conv_padding, torch_padding
from cnnx.layers.drop import DropPath, drop_path_rates
from cnnx.layers.head import ClassifierHead
from cnnx.layers.norm import LocalResponseNorm, batch_norm
from cnnx.layers.remat import maybe_remat

__all__ = [
    "ClassifierHead",
    "Conv",
    "ConvNormAct",
    "DropPath",
    "LocalResponseNorm",
    "batch_norm",
    "conv_padding",
    "drop_path_rates",
    "maybe_remat",
    "torch_padding",
]
