"""Figures over separated rounds: their median, their spread, and whether they allow a verdict.

One run's cnnx ÷ torch ratio on a shared host is not a result: issue 32 measured the same
ratio at 0.58 and 1.12 in two runs of one command minutes apart (torch slows down more than
cnnx when other processes take the cores). `scripts/benchmark.py --rounds=N` therefore
repeats the paired comparison N times, each model's rounds separated by the other models'
(and by the host's ceilings, re-measured every round), and reports each ratio as the median
over rounds with its range. A ratio allows a verdict only when its range stays on one side of
1.0 and is narrow beside its median (`verdict`).
"""

import dataclasses
import statistics
from collections.abc import Sequence

# Widest (max - min) / median over rounds that still counts as one measurement.
MAX_SPREAD = 0.2


@dataclasses.dataclass(frozen=True)
class Spread:
    """The median of per-round values and their range."""

    median: float
    low: float
    high: float
    rounds: int

    @property
    def relative(self) -> float:
        """(high - low) / median: 0 for identical rounds (and for a single round)."""
        return (self.high - self.low) / self.median if self.median else float("inf")

    def __str__(self) -> str:
        if self.rounds < 2:
            return f"{self.median:.2f}"
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


def spread(values: Sequence[float]) -> Spread:
    """The `Spread` of one value per round.

    Raises:
      ValueError: no values.
    """
    if not values:
        raise ValueError("spread() of no rounds")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def verdict(s: Spread, max_spread: float = MAX_SPREAD, parity: float | None = 1.0) -> str | None:
    """Why the rounds do not allow a conclusion, or None when they do.

    Args:
      s: a ratio's (or a ceiling's) spread over rounds.
      max_spread: the widest (max - min) / median accepted.
      parity: the value whose side matters (1.0 for cnnx ÷ torch: which one is faster);
        None for figures with no such value (ceilings).

    Returns:
      None, or a short reason: a single round (no spread measured), a range that straddles
      `parity` (the rounds disagree on which side wins), or one wider than `max_spread`.
    """
    if s.rounds < 2:
        return "one round: no spread measured (--rounds=3 or more to conclude)"
    if parity is not None and s.low < parity < s.high:
        return f"the rounds straddle {parity:g} ({s.low:.2f}-{s.high:.2f}): no winner"
    if s.relative > max_spread:
        return f"spread {s.relative:.0%} of the median, over {max_spread:.0%}"
    return None
