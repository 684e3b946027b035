"""Compound-scaling functions (cnnx/models/scaling.py) and width/depth scaling of every family."""

import math

import pytest

from cnnx import models
from cnnx.models.scaling import (
    compound,
    flops_factor,
    round_filters,
    round_repeats,
    round_resolution,
    stage_configs,
)
from tests.models.helpers import abstract_variables, count_params

# (channels, width, divisor, expected)
ROUND_FILTERS_CASES = [
    (32, 1.0, 8, 32),  # width 1.0 keeps the count as given, even when not a multiple
    (30, 1.0, 8, 30),
    (32, 1.1, 8, 32),  # 35.2 -> nearest multiple of 8 is 32 (>= 90% of 35.2)
    (1280, 1.1, 8, 1408),
    (32, 1.8, 8, 56),  # 57.6 -> 56
    (1280, 2.0, 8, 2560),
    (24, 0.5, 8, 16),  # 12 -> int(16) // 8 * 8 = 16
    (16, 0.25, 8, 8),  # 4 -> never below one divisor
    (100, 0.35, 8, 32),  # 35 -> 32 (>= 31.5)
    (20, 0.55, 8, 16),  # 11 -> 8 < 9.9, so one more divisor: 16
    (48, 0.85, 1, 41),  # divisor 1: plain rounding (40.8)
    (3, 0.1, 1, 1),  # divisor 1: never below one channel
]


@pytest.mark.parametrize(
    "channels,width,divisor,expected",
    ROUND_FILTERS_CASES,
    ids=[f"{c}x{w}/d{d}" for c, w, d, _ in ROUND_FILTERS_CASES],
)
def test_round_filters(channels, width, divisor, expected):
    out = round_filters(channels, width, divisor)
    assert out == expected
    assert isinstance(out, int)
    if width != 1.0 and divisor > 1:
        assert out % divisor == 0
        assert out >= 0.9 * channels * width


ROUND_REPEATS_CASES = [
    (1, 1.0, 1),
    (3, 1.0, 3),
    (2, 1.1, 3),
    (3, 1.1, 4),
    (4, 3.1, 13),
    (1, 0.01, 1),
]


@pytest.mark.parametrize(
    "repeats,depth,expected",
    ROUND_REPEATS_CASES,
    ids=[f"{r}x{d}" for r, d, _ in ROUND_REPEATS_CASES],
)
def test_round_repeats(repeats, depth, expected):
    assert round_repeats(repeats, depth) == expected


def test_stage_configs_keep_the_first_and_repeat_the_last():
    assert stage_configs((32, 64, 96), 1.0) == [32, 64, 96]
    assert stage_configs((32, 64, 96), 0.5) == [32, 64]
    assert stage_configs((32, 64, 96), 2.0) == [32, 64, 96, 96, 96, 96]
    assert stage_configs((None, None), 0.01) == [None]


def test_round_resolution():
    assert round_resolution(224) == 224
    assert round_resolution(224, 1.15) == 258
    assert round_resolution(224, 1.15, divisor=8) == 256
    assert round_resolution(10, 0.01, divisor=8) == 8


def test_compound_rule():
    assert compound(0) == (1.0, 1.0, 1.0)
    depth, width, res = compound(2.0)
    assert depth == pytest.approx(1.2**2)
    assert width == pytest.approx(1.1**2)
    assert res == pytest.approx(1.15**2)
    assert compound(1.0, 2.0, 3.0, 4.0) == (2.0, 3.0, 4.0)


def test_flops_factor_is_about_two_for_the_paper_coefficients():
    assert flops_factor(1.2, 1.1, 1.15) == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    assert flops_factor(1.2, 1.1, 1.15) == pytest.approx(1.92, abs=0.01)  # α·β²·γ² ≈ 2 (§3.3)
    assert flops_factor(1.0, 1.0, 1.0) == 1.0
    # Consistent with `compound`: φ steps multiply FLOPs by the factor φ times.
    d, w, r = compound(3.0)
    assert d * w**2 * r**2 == pytest.approx(flops_factor(1.2, 1.1, 1.15) ** 3)


# --- Every registered family scales with width_mult / depth_mult ------------------------------


def _smallest_of_each_family() -> dict[str, str]:
    smallest: dict[str, tuple[float, str]] = {}
    for name in models.list_models():
        spec = models.get_spec(name)
        size = spec.param_count if spec.param_count is not None else math.inf
        if spec.family not in smallest or (size, name) < smallest[spec.family]:
            smallest[spec.family] = (size, name)
    return {family: name for family, (_, name) in sorted(smallest.items())}


FAMILY_MEMBERS = _smallest_of_each_family()

# Families whose smallest member does not scale as a conv net (documented, reported to the lead).
# family: reason
SCALING_EXCEPTIONS: dict[str, str] = {}
# Families without repeated blocks: they accept `depth_mult` (every family must) but have nothing
# to repeat, so only width is checked. family: reason
_NO_REPEATS = "no repeated blocks; depth_mult is accepted but has nothing to scale"
DEPTH_EXCEPTIONS: dict[str, str] = {
    "alexnet": _NO_REPEATS,
    "lenet": _NO_REPEATS,
    "zfnet": _NO_REPEATS,
}


def _scaled_count(name: str, **mults) -> int:
    spec = models.get_spec(name)
    # Multipliers are relative to the variant's own (mobilenetv1_025 is width 0.25 already).
    overrides = {k: spec.kwargs.get(k, 1.0) * v for k, v in mults.items()}
    return count_params(abstract_variables(name, **overrides))


@pytest.mark.parametrize("family", list(FAMILY_MEMBERS), ids=list(FAMILY_MEMBERS))
def test_family_scales_with_width_and_depth(family):
    if family in SCALING_EXCEPTIONS:
        pytest.skip(SCALING_EXCEPTIONS[family])
    name = FAMILY_MEMBERS[family]
    base = _scaled_count(name)
    wide = _scaled_count(name, width_mult=2.0)
    # Width ×2 doubles both sides of most weight matrices: ~×4 (less where the input layer and
    # the classifier only double).
    assert 2.5 <= wide / base <= 4.5, f"{name}: width ×2 gives params ×{wide / base:.2f}"
    if family in DEPTH_EXCEPTIONS:
        return
    deep = _scaled_count(name, depth_mult=2.0)
    assert deep > base, f"{name}: depth ×2 adds no parameters"
