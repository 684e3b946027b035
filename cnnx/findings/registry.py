"""What a finding is, the scales it runs at, and the registry of findings by name.

A finding (one module each in this package) states a claim from the literature and its
source, lists the runs that test it at a scale, measures them, decides with the comparisons
of `cnnx.findings.verdict`, and draws one figure. Scales:

- `small`: the bundled digits, on a CPU (each finding within about 20 minutes on a quiet
  2-core machine, the whole suite within 2 hours), several seeds;
- `paper`: the papers' datasets through TFDS (CIFAR-10, ImageNet) and recipes, for machines
  with accelerators;
- `smoke`: the small runs cut to a few steps at a tiny resolution and one seed (seconds per
  run): it checks the machinery (tests), not the claim.
"""

import dataclasses
import difflib
from typing import Any

from cnnx.errors import ConfigError
from cnnx.findings.verdict import Comparison

SCALES = ("small", "paper", "smoke")
# What makes a small run a smoke run: 3 steps of 16 images, one evaluation of 16 test images.
SMOKE_CUT = {
    "train.num_steps": 3,
    "train.batch_size": 16,
    "train.log_every_steps": 1,
    "eval.batch_size": 16,
    "eval.every_steps": 1000,
    "ckpt.every_steps": 1000,
    "schedule.warmup_epochs": 0.0,
    "data.eval_split": "test[:16]",
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """A scale and the seeds its runs are repeated over.

    Attributes:
      name: 'small', 'paper' or 'smoke'.
      given_seeds: seeds asked for (`--seeds`); empty: each finding's default (`repeat`).
    """

    name: str
    given_seeds: tuple[int, ...] = ()

    def __post_init__(self):
        if self.name not in SCALES:
            raise ConfigError(f"--scale={self.name}: use one of {', '.join(SCALES)}.")

    def repeat(self, small: int = 2) -> tuple[int, ...]:
        """The seeds of a finding's repeated runs: those asked for, else `small` seeds
        (0, 1, ...) at the small scale and one at the others."""
        if self.given_seeds:
            return tuple(self.given_seeds)
        return tuple(range(small)) if self.name == "small" else (0,)

    @property
    def paper(self) -> bool:
        return self.name == "paper"

    @property
    def smoke(self) -> bool:
        return self.name == "smoke"

    def shrink(self, image_size: int = 8, **more) -> tuple[tuple[str, Any], ...]:
        """Overrides that make a small run a smoke run (none at other scales): `SMOKE_CUT`
        at `image_size` px, plus `more` with '__' for '.' (`model__depth=8`)."""
        if not self.smoke:
            return ()
        cut = {**SMOKE_CUT, "data.image_size": image_size}
        cut.update({k.replace("__", "."): v for k, v in more.items()})
        return tuple(cut.items())


@dataclasses.dataclass
class Measurement:
    """What a finding measured.

    Attributes:
      values: a row per run (or per arm) -> its measured numbers, for the report's table.
      comparisons: the claim's comparisons, each with its verdict.
      notes: what the numbers mean beyond the comparisons (caveats, rounding, divergences).
      plot: what the figure draws beyond the records (e.g. per-layer norms); not written to
        findings.json.
    """

    values: dict[str, dict]
    comparisons: list[Comparison]
    notes: list[str] = dataclasses.field(default_factory=list)
    plot: dict = dataclasses.field(default_factory=dict)


class Finding:
    """A claim and its test. Subclasses set the class attributes and the three methods.

    Attributes:
      name: registry key (`--finding=NAME`).
      number: its place in the suite (issue 29's list), which orders `names()`.
      title: a few words.
      claim: the claim as the literature makes it.
      source: paper, figure or table.
      rule: how the runs decide it (metric, arms, floor), in words, stated before running.
      budget: what the small scale runs and what it costs on a quiet 2-core CPU, estimated
        from its step counts and times measured on a near-quiet host (an 880-step run at
        16 px: plain-20 79 s, ResNet-56 231 s, i.e. ~75 and ~170 ms per step of 64 images
        plus ~15 s of set-up, compilation and evaluation per run).
    """

    name = ""
    number = 0
    title = ""
    claim = ""
    source = ""
    rule = ""
    budget = ""

    def runs(self, scale: Scale) -> list:
        """The `cnnx.findings.runs.Run`s that test the claim at `scale`, in training order."""
        raise NotImplementedError

    def measure(self, records: dict, scale: Scale) -> Measurement:
        """Measures the runs' records ({run name: RunRecord}) and compares the arms."""
        raise NotImplementedError

    def figure(self, records: dict, measurement: Measurement, path: str) -> None:
        """Writes the finding's PNG to `path`."""
        raise NotImplementedError


_FINDINGS: dict[str, Finding] = {}


def register(finding: Finding) -> Finding:
    if finding.name in _FINDINGS:
        raise ValueError(f"finding {finding.name!r} is registered twice")
    _FINDINGS[finding.name] = finding
    return finding


def _load() -> None:
    import cnnx.findings  # noqa: F401  (importing the package registers every finding)


def names() -> list[str]:
    """Registered findings, in the suite's order (their `number`)."""
    _load()
    return sorted(_FINDINGS, key=lambda name: _FINDINGS[name].number)


def get(name: str) -> Finding:
    """The finding called `name`.

    Raises:
      ConfigError: an unknown name, with close matches and the list.
    """
    _load()
    if name in _FINDINGS:
        return _FINDINGS[name]
    close = difflib.get_close_matches(name, list(_FINDINGS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"Unknown finding {name!r}.{hint} The findings: {', '.join(names())} (--list)."
    )
