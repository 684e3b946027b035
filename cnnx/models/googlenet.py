"""GoogLeNet / Inception v1 (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015;
arXiv 1409.4842, 2014), Table 1 and Figure 3.

Inception modules (Table 1 columns: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj):

  3a  64  96 128 16  32  32     4a 192  96 208 16  48  64     5a 256 160 320 32 128 128
  3b 128 128 192 32  96  64     4b 160 112 224 24  64  64     5b 384 192 384 48 128 128
                                4c 128 128 256 24  64  64
                                4d 112 144 288 32  64  64
                                4e 256 160 320 32 128 128

Two variants:

`googlenet` is torchvision's port: BatchNorm (eps 1e-3) after every convolution, no LRN, the
"5×5" branch computed with a 3×3 kernel (a quirk of the port that the weights depend on), a 2×2
pool after 4e, dropout 0.2 before the classifier, `transform_input=False`; both auxiliary heads
are built by default (`aux_logits=True`, as torchvision builds it).

`googlenet_v1` is the paper's network: convolutions with biases and no BatchNorm, local response
normalisation after the first pool and after conv3 (Figure 3; n=5, k=1, α=1e-4 divided by n,
β=0.75, as in the Caffe definition bvlc_googlenet), true 5×5 kernels, 3×3 stride-2 max pools
(Caffe ceil mode), 40% dropout before the classifier, auxiliary heads with 70% dropout.

Auxiliary heads (§5): after 4a and 4d, a 4×4 average pool, a 1×1 convolution with 128 filters,
FC-1024, ReLU, dropout 0.7, a linear classifier. Both variants pool adaptively to 4×4 (as
torchvision does; the paper's 5×5/3 average pool gives 4×4 at 224 px), so the FC size does not
depend on the input size. In train mode the model returns `(logits, (aux1, aux2))`; in eval mode
the logits alone.

`depth_mult` scales the number of Inception modules per stage (2, 5, 2): fewer keep the stage's
first ones, more repeat its last; aux1 follows the first module of stage 4 and aux2 the one
before its last.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, ConvNormAct, LocalResponseNorm
from cnnx.layers.dense import Dense
from cnnx.layers.pool import adaptive_avg_pool, torch_max_pool
from cnnx.models.contract import Classifier
from cnnx.models.registry import INCEPTION_MEAN, INCEPTION_STD, register_family
from cnnx.models.scaling import round_filters, stage_configs

# bvlc_googlenet's LRN: Caffe, like torch, divides alpha by the window size; k defaults to 1.
CAFFE_LRN = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)

STAGES = (
    (
        (64, 96, 128, 16, 32, 32),
        (128, 128, 192, 32, 96, 64),
    ),
    (
        (192, 96, 208, 16, 48, 64),
        (160, 112, 224, 24, 64, 64),
        (128, 128, 256, 24, 64, 64),
        (112, 144, 288, 32, 64, 64),
        (256, 160, 320, 32, 128, 128),
    ),
    (
        (256, 160, 320, 32, 128, 128),
        (384, 192, 384, 48, 128, 128),
    ),
)


class Inception(nn.Module):
    """Four parallel branches (1×1; 1×1 -> 3×3; 1×1 -> 5×5; 3×3 max pool -> 1×1), concatenated.

    Submodule names follow torchvision (`branch2_1` is its `branch2[1]`).
    """

    channels: Sequence[int]
    conv: Any  # functools.partial of ConvNormAct with the variant's norm settings
    kernel5: int = 3

    @nn.compact
    def __call__(self, x, *, train: bool):
        """One Inception module (Figure 2b).

        Args:
          x: (B, H, W, C) features.
          train: BatchNorm uses batch statistics and updates its running averages (`googlenet`).

        Returns:
          (B, H, W, c1 + c3 + c5 + pool proj).
        """
        c1, c3r, c3, c5r, c5, cp = self.channels
        b1 = self.conv(c1, 1, name="branch1")(x, train=train)
        b2 = self.conv(c3r, 1, name="branch2_0")(x, train=train)
        b2 = self.conv(c3, 3, name="branch2_1")(b2, train=train)
        b3 = self.conv(c5r, 1, name="branch3_0")(x, train=train)
        b3 = self.conv(c5, self.kernel5, name="branch3_1")(b3, train=train)
        b4 = torch_max_pool(x, 3, 1, padding=1, ceil_mode=True)
        b4 = self.conv(cp, 1, name="branch4_1")(b4, train=train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4×4 average pool, 1×1 conv (128), FC-1024, ReLU, dropout, FC."""

    num_classes: int
    conv: Any
    width_mult: float = 1.0
    dropout_rate: float = 0.7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """An auxiliary classifier (§5).

        Args:
          x: (B, H, W, C) features of stage 4.
          train: dropout on (needs a 'dropout' rng); BatchNorm uses batch statistics (`googlenet`).

        Returns:
          (B, num_classes) logits.
        """
        x = adaptive_avg_pool(x, 4)
        x = self.conv(round_filters(128, self.width_mult), 1, name="conv")(x, train=train)
        # Flatten in NCHW order so torchvision's fc1 weight converts without a permutation.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        x = Dense(round_filters(1024, self.width_mult), dtype=self.dtype, name="fc1")(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        return Dense(self.num_classes, dtype=self.dtype, name="fc2")(x)


class GoogLeNet(Classifier):
    """GoogLeNet (torchvision's BatchNorm port, or the paper's network with `paper=True`).

    Attributes:
      paper: the paper's variant (biases instead of BatchNorm, LRN, 5×5 kernels, 3×3 pool
        after 4e) instead of torchvision's.
      aux_logits: build the two auxiliary classifiers (used in train mode only).
      num_classes: classifier outputs; 0 returns pooled features (and no auxiliary outputs).
      width_mult: scales every channel count, including the auxiliary heads.
      depth_mult: scales the number of Inception modules per stage.
      dropout_rate: dropout before the classifier (torchvision 0.2, paper 0.4).
      aux_dropout_rate: dropout in the auxiliary heads (0.7).
    """

    paper: bool = False
    aux_logits: bool = True
    dropout_rate: float = 0.2
    aux_dropout_rate: float = 0.7

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        w = lambda c: round_filters(c, self.width_mult)  # noqa: E731

        def conv(features, kernel, strides=1, name=None):
            return ConvNormAct(
                features,
                kernel,
                strides,
                use_bias=self.paper,
                norm=None if self.paper else "batch",
                bn_epsilon=1e-3,
                dtype=self.dtype,
                name=name,
            )

        def scaled_conv(features, kernel, strides=1, name=None):
            return conv(w(features), kernel, strides, name=name)

        x = conv(w(64), 7, 2, name="conv1")(x, train=train)
        x = torch_max_pool(x, 3, 2, ceil_mode=True)
        if self.paper:
            x = LocalResponseNorm(**CAFFE_LRN)(x)
        x = conv(w(64), 1, name="conv2")(x, train=train)
        x = conv(w(192), 3, name="conv3")(x, train=train)
        if self.paper:
            x = LocalResponseNorm(**CAFFE_LRN)(x)
        x = torch_max_pool(x, 3, 2, ceil_mode=True)

        use_aux = self.aux_logits and train and self.num_classes > 0
        aux = []
        for s, configs in enumerate(STAGES):
            stage = stage_configs(configs, self.depth_mult)
            aux_after = (0, max(0, len(stage) - 2)) if s == 1 else ()
            for j, channels in enumerate(stage):
                x = Inception(
                    channels,
                    scaled_conv,
                    kernel5=5 if self.paper else 3,
                    name=f"inception{s + 3}{chr(ord('a') + j)}",
                )(x, train=train)
                for k, after in enumerate(aux_after):
                    if j == after and self.aux_logits and self.num_classes > 0:
                        head = InceptionAux(
                            self.num_classes,
                            conv,
                            self.width_mult,
                            self.aux_dropout_rate,
                            self.dtype,
                            name=f"aux{k + 1}",
                        )
                        # Built (so its parameters exist) in every mode; run only in training.
                        if use_aux or self.is_initializing():
                            aux.append(head(x, train=train))
            if s == 0:
                x = torch_max_pool(x, 3, 2, ceil_mode=True)
            elif s == 1:
                x = (
                    torch_max_pool(x, 3, 2, ceil_mode=True)
                    if self.paper
                    else torch_max_pool(x, 2, 2, ceil_mode=True)
                )
        logits = ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )
        return (logits, tuple(aux)) if use_aux else logits


_PAPER = "Szegedy et al. 2014, Going Deeper with Convolutions (Table 1)"

register_family(
    "googlenet",
    GoogLeNet,
    {
        "googlenet": dict(
            kwargs=dict(paper=False, dropout_rate=0.2),
            reference="torchvision:googlenet",
            param_count=13_004_888,
            # The pretrained builder sets transform_input=True: forward() maps ImageNet-
            # normalised input to (x - 0.5) / 0.5, so the weights expect that normalisation.
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            top1=(69.778, "torchvision IMAGENET1K_V1 weights"),
            dropout=0.2,
        ),
        "googlenet_v1": dict(
            kwargs=dict(paper=True, dropout_rate=0.4),
            param_count=13_378_280,
            dropout=0.4,
            min_resolution=31,
            test_resolution=31,
        ),
    },
    paper=_PAPER,
    year=2014,
    min_resolution=15,
    test_resolution=15,
    lacks=("drop_path_rate", "remat"),
)
