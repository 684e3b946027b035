"""Building blocks shared by the model families.

- `conv`: padding conventions, `Conv` (`nn.Conv` on the platform's convolution), `ConvNormAct`.
- `dense`: `Dense` (`nn.Dense` on the platform's matrix product).
- `norm`: BatchNorm (synchronised over the global batch) and local response normalisation.
- `pool`: flax- and torch-style max pooling, adaptive average pooling.
- `drop`, `head`, `se`: drop path, classifier head, squeeze-and-excitation.
- `mbconv`: inverted residual blocks (MobileNetV2, EfficientNet).
- `transformer`: LayerNorm, GELU, multi-head self-attention and the MLP (ViT, Swin).
- `remat`: per-block rematerialisation.

Platform kernels (convolution, matrix product, max pooling, LayerNorm, GELU, attention) come
through `cnnx.backends` only, which routes them to XLA:CPU's own formulations or to plain lax.
"""

from cnnx.layers.conv import Conv, ConvNormAct, conv_padding, torch_padding
from cnnx.layers.dense import Dense
from cnnx.layers.drop import DropPath, drop_path_rates
from cnnx.layers.head import ClassifierHead
from cnnx.layers.norm import LocalResponseNorm, batch_norm
from cnnx.layers.remat import maybe_remat

__all__ = [
    "ClassifierHead",
    "Conv",
    "ConvNormAct",
    "Dense",
    "DropPath",
    "LocalResponseNorm",
    "batch_norm",
    "conv_padding",
    "drop_path_rates",
    "maybe_remat",
    "torch_padding",
]
