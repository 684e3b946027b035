"""The decision rule on hand-made numbers (cnnx/findings/verdict.py)."""

import pytest

from cnnx.findings.verdict import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    Comparison,
    combine,
)


def compare(a, b, direction="greater", floor=1.0):
    return Comparison("claim", "metric", "a", "b", a, b, direction, floor)


# (a per seed, b per seed, direction, floor, verdict)
CASES = [
    # A clear effect in the claimed direction, seeds close together.
    pytest.param((10.0, 11.0), (30.0, 31.0), "greater", 1.0, HOLDS, id="clear_effect"),
    pytest.param((30.0, 31.0), (10.0, 11.0), "less", 1.0, HOLDS, id="clear_effect_less"),
    # The opposite difference, beyond spread and floor.
    pytest.param((30.0, 31.0), (10.0, 11.0), "greater", 1.0, DOES_NOT_HOLD, id="reversed"),
    # No effect beyond the floor, and the seeds agree within it.
    pytest.param((0.2, 0.4), (0.3, 0.5), "less", 0.5, DOES_NOT_HOLD, id="no_effect"),
    # An effect smaller than the seeds' disagreement.
    pytest.param((10.0, 20.0), (14.0, 19.0), "greater", 1.0, INCONCLUSIVE, id="noisy"),
    # The effect exceeds the floor but not the spread.
    pytest.param((10.0, 16.0), (14.0, 15.0), "greater", 1.0, INCONCLUSIVE, id="within_spread"),
    # One seed: the floor alone decides.
    pytest.param((1.0,), (2.5,), "greater", 1.0, HOLDS, id="one_seed"),
    pytest.param((1.0,), (1.5,), "greater", 1.0, DOES_NOT_HOLD, id="one_seed_small"),
    # Claims of similar values.
    pytest.param((99.0, 99.4), (98.9, 99.5), "similar", 1.0, HOLDS, id="similar"),
    pytest.param((99.0, 99.4), (90.0, 90.5), "similar", 1.0, DOES_NOT_HOLD, id="not_similar"),
    pytest.param((99.0, 95.0), (97.0, 94.0), "similar", 1.0, INCONCLUSIVE, id="similar_noisy"),
]


@pytest.mark.parametrize("a,b,direction,floor,verdict", CASES)
def test_verdict(a, b, direction, floor, verdict):
    assert compare(a, b, direction, floor).verdict == verdict


def test_effect_spread_and_json():
    c = compare((10.0, 12.0), (20.0, 23.0), "less", 0.5)
    assert c.difference == pytest.approx(10.5)
    assert c.effect == pytest.approx(-10.5)  # signed in the claimed direction
    assert c.spread == pytest.approx(3.0)  # the larger range over seeds
    row = c.to_json()
    assert row["verdict"] == DOES_NOT_HOLD and row["mean_b"] == pytest.approx(21.5)
    assert row["a"] == [10.0, 12.0]


@pytest.mark.parametrize(
    "verdicts,combined",
    [
        ([HOLDS, HOLDS], HOLDS),
        ([HOLDS, INCONCLUSIVE], INCONCLUSIVE),
        ([HOLDS, DOES_NOT_HOLD, INCONCLUSIVE], DOES_NOT_HOLD),
        ([], INCONCLUSIVE),
    ],
)
def test_combine(verdicts, combined):
    assert combine(verdicts) == combined


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"direction": "bigger"}, "direction must be"),
        ({"a": ()}, "at least one value"),
        ({"floor": -1.0}, "floor must be"),
    ],
)
def test_bad_comparisons_are_refused(kwargs, match):
    args = dict(
        claim="c",
        metric="m",
        a_label="a",
        b_label="b",
        a=(1.0,),
        b=(2.0,),
        direction="greater",
        floor=0.0,
    )
    with pytest.raises(ValueError, match=match):
        Comparison(**{**args, **kwargs})
