"""ZFNet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014;
arXiv 1311.2901, 2013), the network of Figure 3.

AlexNet retuned after the paper's visualisations (§4.1): a 7×7 stride-2 first layer instead of
11×11 stride 4, one tower with dense connections in layers 3-5 instead of the two-GPU split.
Layer sizes are read off Figure 3 (224×224 crops):

  layer  filters  kernel/stride   output      followed by
  1      96       7×7 / 2, pad 1  110×110     ReLU, max pool 3/2 -> 55×55, contrast norm
  2      256      5×5 / 2         26×26       ReLU, max pool 3/2 -> 13×13, contrast norm
  3      384      3×3 / 1, pad 1  13×13       ReLU
  4      384      3×3 / 1, pad 1  13×13       ReLU
  5      256      3×3 / 1, pad 1  13×13       ReLU, max pool 3/2 -> 6×6
  6      4096 (fully connected), dropout 0.5
  7      4096 (fully connected), dropout 0.5
  8      1000-way softmax

Figure 3's 110 -> 55 and 26 -> 13 pool sizes need ceil-mode pooling (Caffe's convention);
padding 1 in layer 1 gives its 110×110 maps. The contrast normalisation "across feature maps" is
a local response normalisation with AlexNet's settings, which the paper does not restate. No
torchvision/timm reference exists.
"""

from cnnx.models._alexnet_style import AlexNetStyle, ConvLayer
from cnnx.models.registry import register_family

ZFNET = (
    ConvLayer(96, 7, 2, 1, lrn=True, pool=True),
    ConvLayer(256, 5, 2, 0, lrn=True, pool=True),
    ConvLayer(384, 3, 1, 1),
    ConvLayer(384, 3, 1, 1),
    ConvLayer(256, 3, 1, 1, pool=True),
)


class ZFNet(AlexNetStyle):
    """ZFNet: AlexNet's network with Figure 3's table, ceil-mode pools and LRN after pooling.

    Fields and call as `cnnx.models._alexnet_style.AlexNetStyle`.
    """

    layers: tuple[ConvLayer, ...] = ZFNET
    pool_ceil: bool = True
    lrn_first: bool = False


register_family(
    "zfnet",
    ZFNet,
    {"zfnet": dict(param_count=62_357_608)},
    paper="Zeiler & Fergus 2013, Visualizing and Understanding Convolutional Networks",
    year=2013,
    dropout=0.5,
    min_resolution=47,
    test_resolution=47,
    lacks=("drop_path_rate", "remat"),
)
