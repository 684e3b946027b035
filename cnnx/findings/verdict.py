"""The decision rule: when a measured difference counts as the claimed effect.

A finding's claim is tested by one or more comparisons of two arms (e.g. training error of
plain-20 vs plain-56), each arm measured once per seed. For a comparison:

- `effect` is the difference of the arms' means, signed so that the claimed direction is
  positive (for a claim of *similar* values: its absolute value);
- `spread` is the seed noise: the larger of the two arms' ranges (max − min over seeds; 0 with
  one seed);
- `floor` is the smallest difference the comparison counts at all, fixed with the finding
  before anything runs (e.g. one point of top-1: 3.6 test digits of 359).

Verdict of one comparison, with margin = max(spread, floor):

| claim          | holds               | does not hold at this scale         | inconclusive |
|----------------|---------------------|-------------------------------------|--------------|
| a direction    | effect > margin     | effect < −margin, or                | otherwise    |
|                |                     | |effect| ≤ margin, spread ≤ floor   |              |
| similar values | effect ≤ floor, and | effect > margin                     | otherwise    |
|                | spread ≤ floor      |                                     |              |

So a difference counts only when it exceeds both the seed spread and the floor; when the seeds
disagree by more than the difference, the answer is inconclusive, with that spread reported.
A finding holds when every comparison holds, does not hold when any does not, and is otherwise
inconclusive.
"""

import dataclasses
import statistics

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold at this scale"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)
# The direction a comparison claims for arm b against arm a.
DIRECTIONS = ("greater", "less", "similar")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One claimed relation between two arms, each measured once per seed.

    Attributes:
      claim: the relation in words ("plain-56 ends at a higher training error than plain-20").
      metric: what is compared, with its unit ("final training error (%)").
      a_label, b_label: the arms' names.
      a, b: the arms' values, one per seed (same order of seeds; lengths may differ).
      direction: 'greater' (b > a claimed), 'less' (b < a) or 'similar' (|b − a| small).
      floor: the smallest difference that counts, in the metric's unit (>= 0).
    """

    claim: str
    metric: str
    a_label: str
    b_label: str
    a: tuple[float, ...]
    b: tuple[float, ...]
    direction: str
    floor: float

    @classmethod
    def between(
        cls, claim: str, metric: str, arms: dict, a: str, b: str, direction: str, floor: float
    ) -> "Comparison":
        """The comparison of arms `a` and `b` of `arms` (label -> values per seed)."""
        return cls(claim, metric, a, b, arms[a], arms[b], direction, floor)

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not self.a or not self.b:
            raise ValueError(f"{self.claim}: each arm needs at least one value")
        if self.floor < 0:
            raise ValueError(f"{self.claim}: floor must be >= 0, got {self.floor}")
        object.__setattr__(self, "a", tuple(float(v) for v in self.a))
        object.__setattr__(self, "b", tuple(float(v) for v in self.b))

    @property
    def difference(self) -> float:
        """mean(b) − mean(a)."""
        return statistics.fmean(self.b) - statistics.fmean(self.a)

    @property
    def effect(self) -> float:
        """The difference signed so that the claimed direction is positive (absolute for
        'similar')."""
        d = self.difference
        return {"greater": d, "less": -d, "similar": abs(d)}[self.direction]

    @property
    def spread(self) -> float:
        """The larger of the two arms' ranges over seeds (0 with one seed each)."""
        return max(max(self.a) - min(self.a), max(self.b) - min(self.b))

    @property
    def verdict(self) -> str:
        effect, spread, floor = self.effect, self.spread, self.floor
        margin = max(spread, floor)
        if self.direction == "similar":
            if effect <= floor and spread <= floor:
                return HOLDS
            return DOES_NOT_HOLD if effect > margin else INCONCLUSIVE
        if effect > margin:
            return HOLDS
        if effect < -margin or spread <= floor:
            return DOES_NOT_HOLD
        return INCONCLUSIVE

    def to_json(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "a": list(self.a),
            "b": list(self.b),
            "mean_a": statistics.fmean(self.a),
            "mean_b": statistics.fmean(self.b),
            "effect": self.effect,
            "spread": self.spread,
            "verdict": self.verdict,
        }


def combine(verdicts) -> str:
    """A finding's verdict from its comparisons': holds only if all hold, does not hold if any
    does not, inconclusive otherwise (and for no comparison at all)."""
    verdicts = list(verdicts)
    if not verdicts:
        return INCONCLUSIVE
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == DOES_NOT_HOLD for v in verdicts):
        return DOES_NOT_HOLD
    return INCONCLUSIVE
