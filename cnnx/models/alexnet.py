"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012, §3 and Figure 2).

Two variants of the same five-convolution, three-FC network (`cnnx.models._alexnet_style`):

`alexnet` is torchvision's single-tower AlexNet (after Krizhevsky's "One weird trick", 2014):
64-192-384-256-256 filters, no LRN, no groups, padding 2 in conv1; equal to
`torchvision.models.alexnet` tensor for tensor.

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
LRN uses the paper's n=5, k=2, α=1e-4, β=0.75 (`PAPER_LRN`). Biases of conv2, conv4, conv5 and
the FC layers start at 1 (§5). Both variants end their convolutions with torchvision's adaptive
6×6 average pool (an identity at the reference resolution), so the FC layers do not depend on
the input size.
"""

from cnnx.models._alexnet_style import AlexNetStyle, ConvLayer
from cnnx.models.registry import register_family

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


class AlexNet(AlexNetStyle):
    """AlexNet: torchvision's single-tower layout by default, or the paper's (`ORIGINAL`).

    Fields and call as `cnnx.models._alexnet_style.AlexNetStyle`.
    """

    layers: tuple[ConvLayer, ...] = TORCHVISION


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
    lacks=("drop_path_rate", "remat"),
)
