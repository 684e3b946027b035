"""Depth by convention: layers with weights (convolutions and fully connected layers).

Rule: the depth is the largest number of weight layers on any path from the input to the
output. Branches in parallel do not add up, so ResNet-50's projection shortcuts (1×1 convs
beside the 3-layer bottleneck) are not counted: 1 stem + 16 × 3 + 1 fc = 50. VGG-16 gives
13 + 3 = 16, AlexNet 5 + 3 = 8, LeNet-5 5 (7 with its two subsampling layers counted).
Attention products (both operands computed from the input) are not weight layers, and
squeeze-excite gates (a (B, 1, 1, C) scale multiplied onto the map) are beside the main path,
so SE-ResNet-50 is 50 and EfficientNet-B0 50 (stem, 2 + 15 × 3 MBConv layers, head conv, fc);
GoogLeNet gives the paper's 22, MobileNetV2 53, DenseNet-121 121.
`count_pooling=True` also counts max/avg/global pooling layers.
"""

from cnnx.analysis.trace import Trace, trace_registered


def depth_of(tr: Trace, count_pooling: bool = False) -> int:
    """Depth of a traced model."""
    return tr.depth_pool if count_pooling else tr.depth


def depth(name: str, count_pooling: bool = False, resolution: int | None = None) -> int:
    """Depth of a registered model (see the module docstring for the rule)."""
    return depth_of(trace_registered(name, resolution), count_pooling)
