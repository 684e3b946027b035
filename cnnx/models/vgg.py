"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015; arXiv 1409.1556, 2014), Table 1 configurations A-E.

Convolutions per stage (3×3 unless marked 1×1; stride 1, padding 1; ReLU after each; a 2×2
stride-2 max pool ends every stage), then FC-4096, FC-4096, FC-1000 with dropout 0.5 after the
first two:

  config  name        stage1  stage2  stage3         stage4         stage5
  A       vgg11       64      128     256×2          512×2          512×2
  A-LRN   vgg11_lrn   64+LRN  128     256×2          512×2          512×2
  B       vgg13       64×2    128×2   256×2          512×2          512×2
  C       vgg16c      64×2    128×2   256×2 + 1×1    512×2 + 1×1    512×2 + 1×1
  D       vgg16       64×2    128×2   256×3          512×3          512×3
  E       vgg19       64×2    128×2   256×4          512×4          512×4

The LRN of A-LRN uses Krizhevsky's settings (n=5, k=2, α=1e-4 on the undivided sum, β=0.75).
`*_bn` variants add BatchNorm after every convolution (torchvision; not in the paper).

Layout and names follow torchvision's `VGG`: an adaptive 7×7 average pool before the classifier
(an identity at 224 px, so the FC sizes do not depend on the input size), and submodules named
after torchvision's Sequential indices (`features_7`, `classifier_3`), because which index holds a
convolution depends on the configuration; a torchvision checkpoint then converts with a one-line
rule, for every configuration. `depth_mult` scales the number of 3×3 convolutions per stage.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, LocalResponseNorm, batch_norm
from cnnx.layers.conv import Conv
from cnnx.layers.dense import Dense
from cnnx.layers.pool import adaptive_avg_pool, max_pool
from cnnx.models._alexnet_style import PAPER_LRN
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters, round_repeats

# Per stage: (channels, 3×3 convolutions, 1×1 convolutions after them).
CONFIGS = {
    "A": ((64, 1, 0), (128, 1, 0), (256, 2, 0), (512, 2, 0), (512, 2, 0)),
    "B": ((64, 2, 0), (128, 2, 0), (256, 2, 0), (512, 2, 0), (512, 2, 0)),
    "C": ((64, 2, 0), (128, 2, 0), (256, 2, 1), (512, 2, 1), (512, 2, 1)),
    "D": ((64, 2, 0), (128, 2, 0), (256, 3, 0), (512, 3, 0), (512, 3, 0)),
    "E": ((64, 2, 0), (128, 2, 0), (256, 4, 0), (512, 4, 0), (512, 4, 0)),
}


class VGG(Classifier):
    """VGG in torchvision's layout.

    Attributes:
      stages: (channels, 3×3 convs, 1×1 convs) per stage (a `CONFIGS` entry).
      batch_norm: BatchNorm after every convolution (torchvision's `vgg*_bn`).
      lrn: local response normalisation after the first convolution (config A-LRN).
      num_classes: classifier outputs; 0 returns the fc7 features.
      fc_features: width of the two hidden FC layers.
      width_mult: scales every conv and FC width (`round_filters`).
      depth_mult: scales the 3×3 convolutions of every stage (`round_repeats`).
      dropout_rate: dropout after fc6 and after fc7 (0.5 in the paper).
    """

    stages: Sequence[tuple[int, int, int]] = CONFIGS["D"]
    batch_norm: bool = False
    lrn: bool = False
    fc_features: int = 4096
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        index = 0  # torchvision's position in its `features` Sequential
        for channels, n3, n1 in self.stages:
            kernels = [3] * round_repeats(n3, self.depth_mult) + [1] * n1
            for k in kernels:
                x = Conv(
                    round_filters(channels, self.width_mult),
                    (k, k),
                    padding=[(k // 2, k // 2)] * 2,
                    kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                    dtype=self.dtype,
                    name=f"features_{index}",
                )(x)
                index += 1
                if self.batch_norm:
                    x = batch_norm(train, dtype=self.dtype, name=f"features_{index}")(x)
                    index += 1
                x = nn.relu(x)
                index += 1
                if self.lrn and index == (4 if self.batch_norm else 3) - 1:  # first conv only
                    x = LocalResponseNorm(**PAPER_LRN)(x)
                    index += 1
            x = max_pool(x, (2, 2), strides=(2, 2))
            index += 1
        x = adaptive_avg_pool(x, 7)
        # Flatten in NCHW order so torchvision's first FC weight converts without a permutation.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        width = round_filters(self.fc_features, self.width_mult)
        dense_init = nn.initializers.normal(0.01)
        for i, name in enumerate(("classifier_0", "classifier_3")):
            if i:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = nn.relu(Dense(width, kernel_init=dense_init, dtype=self.dtype, name=name)(x))
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_TOP1 = "torchvision IMAGENET1K_V1 weights"

# name: (config, batch norm, LRN, exact parameter count, torchvision top-1 or None)
TABLE = {
    "vgg11": ("A", False, False, 132_863_336, 69.020),
    "vgg11_lrn": ("A", False, True, 132_863_336, None),
    "vgg13": ("B", False, False, 133_047_848, 69.928),
    "vgg16c": ("C", False, False, 133_638_952, None),
    "vgg16": ("D", False, False, 138_357_544, 71.592),
    "vgg19": ("E", False, False, 143_667_240, 72.376),
    "vgg11_bn": ("A", True, False, 132_868_840, 70.370),
    "vgg13_bn": ("B", True, False, 133_053_736, 71.586),
    "vgg16_bn": ("D", True, False, 138_365_992, 73.360),
    "vgg19_bn": ("E", True, False, 143_678_248, 74.218),
}

register_family(
    "vgg",
    VGG,
    {
        name: dict(
            kwargs=dict(stages=CONFIGS[config], batch_norm=bn, lrn=lrn),
            reference="" if name in ("vgg11_lrn", "vgg16c") else f"torchvision:{name}",
            param_count=count,
            top1=None if top1 is None else (top1, _TOP1),
        )
        for name, (config, bn, lrn, count, top1) in TABLE.items()
    },
    paper="Simonyan & Zisserman 2014, Very Deep Convolutional Networks (Table 1)",
    year=2014,
    dropout=0.5,
    min_resolution=32,
    test_resolution=32,
    lacks=("drop_path_rate", "remat"),
)
