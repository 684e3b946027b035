"""Where each parameter sits in depth: the stem, the blocks in order, the head.

Layer-wise learning-rate decay (`optim.layer_decay`; Clark et al. 2020 for ELECTRA, Bao et al.
2022 for BEiT, timm's `param_groups_layer_decay`) gives each depth its own rate, the head the
full rate and every layer below it `decay` times its upper neighbour's. The optimizer holds
no family knowledge: a family declares its `LayerGroups` on its specs
(`register_family(..., layer_groups=...)`), and `depths` numbers a parameter tree by them.

The numbering is timm's `group_matcher(coarse=False)` through `group_parameters`: the stem is
depth 0; the blocks follow in the order of the integers their regex captures (stage, block),
one depth each, a stage's downsampling layer sharing the depth of that stage's first block;
a final norm shares the last block's depth; everything else (classifier, pre-logits norm) is
the head, one deeper than the last block. tests/models/test_layer_groups.py compares this
with timm's own grouping for ResNet, ViT, ConvNeXt and Swin.
"""

import dataclasses
import re
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class LayerGroups:
    """A family's parameter-path rules, regular expressions matched at the start of the
    '/'-joined path (`stage2_block0/conv1/conv/kernel`).

    Attributes:
      stem: what sits at depth 0 (the stem, patch embedding, class token, position embedding).
      blocks: (regex, suffix) pairs, first match wins; the regex's captured integers followed
        by `suffix` order the blocks (`(r'stage(\\d+)_block(\\d+)/', ())`); equal keys share a
        depth, so a suffix of `(0,)` puts a stage's downsampling layer with its block 0.
      with_last_block: what shares the last block's depth (a final norm before the head).
    """

    stem: str
    blocks: tuple[tuple[str, tuple[int, ...]], ...]
    with_last_block: str | None = None

    def depths(self, paths: Iterable[str]) -> tuple[dict[str, int], int]:
        """The depth of each parameter path, and how many depths there are.

        Args:
          paths: '/'-joined parameter paths of one model.

        Returns:
          (path -> depth in [0, n), n): the stem 0, the blocks 1..n-2, the head n-1.
        """
        keys = {path: self._key(path) for path in paths}
        blocks = sorted({k for k in keys.values() if isinstance(k, tuple)})
        order = {key: i + 1 for i, key in enumerate(blocks)}
        head = len(blocks) + 1
        named = {"stem": 0, "last": len(blocks), "head": head}  # last: the last block (or stem)
        return {
            p: order[k] if isinstance(k, tuple) else named[k] for p, k in keys.items()
        }, head + 1

    def _key(self, path: str) -> tuple[int, ...] | str:
        if re.match(self.stem, path):
            return "stem"
        for pattern, suffix in self.blocks:
            m = re.match(pattern, path)
            if m:
                return tuple(int(g) for g in m.groups()) + tuple(suffix)
        if self.with_last_block and re.match(self.with_last_block, path):
            return "last"
        return "head"


def lr_multipliers(groups: LayerGroups, paths: Iterable[str], decay: float) -> dict[str, float]:
    """Each parameter's learning-rate multiplier: `decay ** (n - 1 - depth)` (BEiT's
    `LayerDecayValueAssigner`), 1 for the head.

    Args:
      groups: the family's rules.
      paths: '/'-joined parameter paths.
      decay: the per-depth factor, in (0, 1].

    Returns:
      path -> multiplier.
    """
    depth, n = groups.depths(paths)
    return {p: float(decay ** (n - 1 - d)) for p, d in depth.items()}


# The families' rules (cnnx names; the timm `group_matcher` each follows in a comment).
# `stage<i>_block<j>` networks: ResNet, ResNeXt, Wide ResNet, the CIFAR ResNets (timm's ResNet:
# stem conv1|bn1, blocks layer<i>.<j>, the shortcut inside block 0).
STAGED = LayerGroups(stem=r"stem", blocks=((r"stage(\d+)_block(\d+)/", ()),))
# ViT (timm VisionTransformer: stem cls_token|pos_embed|patch_embed, blocks.<i>, the final
# norm with the last block).
VIT = LayerGroups(
    stem=r"(cls_token|pos_embed|patch_embed)(/|$)",
    blocks=((r"block(\d+)/", ()),),
    with_last_block=r"norm/",
)
# ConvNeXt (timm: stem, stages.<i>.downsample with block 0, stages.<i>.blocks.<j>; the head's
# norm is part of the head). cnnx's `downsample<i>_*` precedes stage i.
CONVNEXT = LayerGroups(
    stem=r"stem_",
    blocks=((r"stage(\d+)_block(\d+)/", ()), (r"downsample(\d+)_", (0,))),
)
# Swin (timm: patch_embed, layers.<i>.downsample with block 0, layers.<i>.blocks.<j>, the final
# norm with the last block). cnnx's `merge<i>` is the patch merging that opens stage i.
SWIN = LayerGroups(
    stem=r"patch_(embed|norm)/",
    blocks=((r"stage(\d+)_block(\d+)/", ()), (r"merge(\d+)/", (0,))),
    with_last_block=r"norm/",
)
# A block key after every `stage<i>_block<j>`: a block of its own that closes the stages.
AFTER_STAGES = (2**31 - 1,)
# MobileNet v3 (timm's MobileNetV3: conv_stem|bn1, blocks.<i>.<j> of which the last is the
# 1x1 convolution cnnx calls head_conv; conv_head, cnnx's pre_logits, is part of the head).
MOBILENET_V3 = LayerGroups(
    stem=r"stem",
    blocks=((r"stage(\d+)_block(\d+)/", ()), (r"head_conv/", AFTER_STAGES)),
)
# EfficientNet and MobileNet v2 (timm's EfficientNet class: conv_stem|bn1, blocks.<i>.<j>, the
# 1x1 head convolution conv_head|bn2 with the last block).
EFFICIENTNET = LayerGroups(
    stem=r"stem", blocks=((r"stage(\d+)_block(\d+)/", ()),), with_last_block=r"head_conv/"
)
