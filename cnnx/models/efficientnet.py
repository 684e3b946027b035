"""EfficientNet B0–B7 (Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", 2019).

B0 is Table 1 of the paper: a strided 3×3 stem with 32 filters, seven stages of MBConv blocks
(expansion, kernel, stride, channels, repeats in `STAGES`), each with squeeze-and-excitation
(squeeze width a quarter of the block's input channels, SiLU) and SiLU activations, a 1×1 conv
to 1280 channels, global average pooling, dropout and the classifier. Stochastic depth
("drop-connect", survival 0.8 at the last block) grows linearly with the block index:
block i of n drops its residual branch with rate `drop_path_rate * i / n` (torchvision's and
timm's rule).

B1–B7 scale B0 with the published (width, depth, resolution, dropout) table (§3.3 and the
official `efficientnet_builder`): `width_mult` goes through `round_filters` to the stem, every
stage and the head conv; `depth_mult` through `round_repeats` (ceil) to every stage. The
published table is not exactly the compound rule; `efficientnet(phi)` builds a network from the
rule itself (depth α^φ, width β^φ, resolution γ^φ with α=1.2, β=1.1, γ=1.15, §3.3 eq. 3).

Two references, two registered families with one conversion mapping each (same parameters):
  * `efficientnet_b0` … `efficientnet_b7` — torchvision's layout and settings: torch symmetric
    padding, BatchNorm eps 1e-5 / momentum 0.1 for B0–B4 and eps 1e-3 / momentum 0.01 for
    B5–B7 (torchvision's own builders).
  * `tf_efficientnet_b0` … `tf_efficientnet_b7` — timm's ports of the original TensorFlow
    weights: `padding='same'` (TF SAME, asymmetric for stride 2) and `bn_epsilon=1e-3`.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn

from cnnx.layers import ClassifierHead, ConvNormAct, maybe_remat
from cnnx.layers.conv import Padding
from cnnx.layers.mbconv import InvertedResidual
from cnnx.models import layer_groups
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import compound, round_filters, round_repeats, round_resolution

# EfficientNet-B0, Table 1: (expand ratio, kernel, first stride, channels, repeats).
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_WIDTH = 32
HEAD_WIDTH = 1280

# name suffix: (width, depth, resolution, dropout), the official `efficientnet_params`.
SCALING = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


class EfficientNet(Classifier):
    """EfficientNet (MBConv + squeeze-excite + SiLU) at any width and depth.

    Attributes:
      width_mult: scales stem, stage and head channels (`round_filters`).
      depth_rounding: 'ceil' (published B1–B7) or 'round' (the compound builder's default, so
        FLOPs follow α·β²·γ²; see `round_repeats`).
      dropout_rate: dropout before the classifier (0.2 for B0 … 0.5 for B7).
      drop_path_rate: stochastic depth rate reached at the last block (paper: 0.2).
      padding: 'torch' (symmetric, torchvision) or 'same' (TensorFlow SAME, timm `tf_*`).
      bn_epsilon: BatchNorm epsilon (torchvision B0–B4: 1e-5; B5–B7 and TF: 1e-3).
      bn_momentum: BatchNorm running-average decay (0.9 is torch's 0.1, 0.99 torch's 0.01).
    """

    depth_rounding: str = "ceil"
    dropout_rate: float = 0.2
    drop_path_rate: float = 0.2
    padding: Padding = "torch"
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        norm = dict(bn_epsilon=self.bn_epsilon, bn_momentum=self.bn_momentum, dtype=self.dtype)
        stem = round_filters(STEM_WIDTH, self.width_mult)
        x = ConvNormAct(stem, 3, 2, padding=self.padding, act=nn.silu, name="stem", **norm)(
            x, train=train
        )
        repeats = [round_repeats(r, self.depth_mult, self.depth_rounding) for *_, r in STAGES]
        total, index = sum(repeats), 0
        for i, ((expand, kernel, stride, channels, _), n) in enumerate(zip(STAGES, repeats)):
            features = round_filters(channels, self.width_mult)
            for j in range(n):
                x = maybe_remat(InvertedResidual, self.remat)(
                    features,
                    stride if j == 0 else 1,
                    expand_ratio=expand,
                    kernel_size=kernel,
                    act=nn.silu,
                    # A quarter of the block's input channels (not of the expanded width).
                    se_features=max(1, x.shape[-1] // 4),
                    se_act=nn.silu,
                    drop_path_rate=self.drop_path_rate * index / total,
                    padding=self.padding,
                    name=f"stage{i + 1}_block{j}",
                    **norm,
                )(x, train=train)
                index += 1
        head = round_filters(HEAD_WIDTH, self.width_mult)
        x = ConvNormAct(head, 1, act=nn.silu, name="head_conv", **norm)(x, train=train)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


class CompoundModel(NamedTuple):
    """A network built from the compound scaling rule and the resolution it is meant for."""

    module: EfficientNet
    resolution: int


def efficientnet(
    phi: float,
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
    base_resolution: int = 224,
    **kwargs,
) -> CompoundModel:
    """EfficientNet-B0 scaled by the compound rule (§3.3): depth α^φ, width β^φ, resolution γ^φ.

    With the paper's α·β²·γ² ≈ 2, each unit of φ about doubles the FLOPs. Unlike the published
    B1–B7 table (hand-tuned values), this follows the rule exactly, so sweeps over (α, β, γ, φ)
    compare like with like; block counts are rounded to the nearest integer
    (`depth_rounding='round'`) for the same reason.

    Args:
      phi: compound coefficient (0 gives B0).
      alpha: depth base.
      beta: width base.
      gamma: resolution base.
      base_resolution: B0's input size.
      **kwargs: other `EfficientNet` fields (num_classes, dropout_rate, padding, dtype, ...).

    Returns:
      `CompoundModel(module, resolution)`; it unpacks as `module, resolution = efficientnet(1)`.
    """
    depth, width, res = compound(phi, alpha, beta, gamma)
    # Nearest rounding of block counts keeps the network on the rule's FLOPs curve (ceil would
    # double every 1-block stage: 2.55× B0's FLOPs at φ = 1 instead of about 2×).
    kwargs.setdefault("depth_rounding", "round")
    module = EfficientNet(width_mult=width, depth_mult=depth, **kwargs)
    return CompoundModel(module, round_resolution(base_resolution, res))


_PAPER = "Tan & Le 2019, EfficientNet: Rethinking Model Scaling for CNNs"

# suffix: exact parameter count (torchvision = timm tf_*), torchvision IMAGENET1K_V1 top-1,
# paper top-1 (Table 2, the TF weights timm's tf_* models carry).
COUNTS = {
    "b0": (5_288_548, 77.692, 77.1),
    "b1": (7_794_184, 78.642, 79.1),
    "b2": (9_109_994, 80.608, 80.1),
    "b3": (12_233_232, 82.008, 81.6),
    "b4": (19_341_616, 83.384, 82.9),
    "b5": (30_389_784, 83.444, 83.6),
    "b6": (43_040_704, 84.008, 84.0),
    "b7": (66_347_960, 84.122, 84.3),
}
# timm tf_* evaluation crop ratios (resolution / resize).
TF_CROP_PCT = {
    "b0": 0.875,
    "b1": 0.882,
    "b2": 0.89,
    "b3": 0.904,
    "b4": 0.922,
    "b5": 0.934,
    "b6": 0.942,
    "b7": 0.949,
}
# torchvision IMAGENET1K_V1 evaluation: (crop size, resize size).
TV_EVAL = {
    "b0": (224, 256),
    "b1": (240, 256),
    "b2": (288, 288),
    "b3": (300, 320),
    "b4": (380, 384),
    "b5": (456, 456),
    "b6": (528, 528),
    "b7": (600, 600),
}


def _row(suffix: str, tf: bool) -> Mapping[str, Any]:
    width, depth, resolution, dropout = SCALING[suffix]
    count, tv_top1, paper_top1 = COUNTS[suffix]
    kwargs = dict(width_mult=width, depth_mult=depth, dropout_rate=dropout)
    if tf:
        kwargs |= dict(padding="same", bn_epsilon=1e-3)
        top1 = (paper_top1, "Tan & Le 2019, Table 2 (TF weights)")
        eval_res, crop = resolution, TF_CROP_PCT[suffix]
    else:
        if suffix in ("b5", "b6", "b7"):
            kwargs |= dict(bn_epsilon=1e-3, bn_momentum=0.99)
        top1 = (tv_top1, "torchvision IMAGENET1K_V1 weights")
        eval_res, resize = TV_EVAL[suffix]
        crop = eval_res / resize
    prefix = "tf_efficientnet" if tf else "efficientnet"
    return dict(
        kwargs=kwargs,
        resolution=resolution,
        eval_resolution=eval_res,
        crop_pct=crop,
        dropout=dropout,
        reference=f"{'timm' if tf else 'torchvision'}:{prefix}_{suffix}",
        param_count=count,
        top1=top1,
    )


for _family in ("efficientnet", "tf_efficientnet"):
    register_family(
        _family,
        EfficientNet,
        {f"{_family}_{s}": _row(s, _family.startswith("tf_")) for s in SCALING},
        paper=_PAPER,
        year=2019,
        layer_groups=layer_groups.EFFICIENTNET,
        drop_path=0.2,
        min_resolution=32,
        test_resolution=32,
    )
