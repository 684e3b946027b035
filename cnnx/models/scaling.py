"""Compound scaling: pure functions that turn (width, depth, resolution) multipliers into layers.

Every family applies `width_mult` through `round_filters` (to the channels of every stage, stem
and head) and `depth_mult` through `round_repeats` (to every stage's block count), so the sweep
driver can scale any family the way Tan & Le (2019) scale EfficientNet.
Reference: tensorflow/tpu `efficientnet_builder.round_filters`, timm `make_divisible`.
"""

import math
from collections.abc import Sequence
from typing import Any


def round_filters(channels: int, width_mult: float = 1.0, divisor: int = 8) -> int:
    """Scales a channel count and rounds it to the nearest multiple of `divisor`.

    The rounded value never drops below 90% of the scaled value (EfficientNet's rule), so
    small layers are not starved by the rounding.

    Args:
      channels: the channel count at width 1.0.
      width_mult: the width multiplier.
      divisor: channels are made a multiple of this (hardware friendly); 1 disables it.

    Returns:
      The scaled, rounded channel count (at least `divisor`).
    """
    if width_mult == 1.0:
        return int(channels)
    scaled = channels * width_mult
    if divisor <= 1:
        return max(1, round(scaled))
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_mult: float = 1.0, mode: str = "ceil") -> int:
    """Scales a stage's block count by `depth_mult` (never below one block).

    Args:
      repeats: blocks at depth 1.0.
      depth_mult: the depth multiplier.
      mode: 'ceil' (the EfficientNet builder's rule, which the published B1–B7 use) or
        'round' (nearest). Ceil turns every 1-block stage into 2 blocks as soon as
        depth_mult > 1, so at depth 1.2 EfficientNet-B0's 16 blocks become 23, not 19; 'round'
        keeps total depth, and so FLOPs, on the compound rule's curve.
    """
    if depth_mult == 1.0:
        return int(repeats)
    if mode == "ceil":
        return max(1, math.ceil(repeats * depth_mult))
    if mode == "round":
        return max(1, math.floor(repeats * depth_mult + 0.5))
    raise ValueError(f"round_repeats: mode must be 'ceil' or 'round', got {mode!r}")


def round_resolution(resolution: int, resolution_mult: float = 1.0, divisor: int = 1) -> int:
    """Scales an input resolution, rounded to the nearest multiple of `divisor`."""
    scaled = resolution * resolution_mult
    return max(divisor, round(scaled / divisor) * divisor)


def compound(
    phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15
) -> tuple[float, float, float]:
    """EfficientNet's compound scaling rule: depth α^φ, width β^φ, resolution γ^φ.

    With α·β²·γ² ≈ 2, FLOPs grow by about 2^φ.

    Args:
      phi: the compound coefficient.
      alpha: depth base (paper: 1.2).
      beta: width base (paper: 1.1).
      gamma: resolution base (paper: 1.15).

    Returns:
      (depth_mult, width_mult, resolution_mult).
    """
    return alpha**phi, beta**phi, gamma**phi


def flops_factor(alpha: float, beta: float, gamma: float) -> float:
    """The FLOPs growth of one compound step: α·β²·γ² (FLOPs are linear in depth, quadratic in
    width and resolution)."""
    return alpha * beta**2 * gamma**2


def stage_configs(configs: Sequence[Any], depth_mult: float) -> list[Any]:
    """The module configurations of one stage after depth scaling (`round_repeats`).

    Fewer modules keep the first configurations, more repeat the last one:
    `stage_configs((32, 64, 64), 2.0)` is `[32, 64, 64, 64, 64, 64]`.
    """
    n = round_repeats(len(configs), depth_mult)
    return (list(configs) + [configs[-1]] * n)[:n]
