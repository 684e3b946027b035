"""Finding 3, BatchNorm (Ioffe & Szegedy 2015, Fig. 2 and §4.2.1): the same network with
BatchNorm reaches a target accuracy in fewer steps and trains at learning rates where the
network without it diverges.

Runs: plain20_cifar with and without BN (configs/findings.py:batchnorm), base learning rates
0.02, 0.2 and 2.0 per 256 images (0.005, 0.05, 0.5 at the digits' batch of 64: the recipe's
0.05 and a decade either side; Ioffe & Szegedy raised theirs 5× and 30×), 20 epochs, logged
every half epoch. A run "trains" when it does not diverge and ends below 50% training error
(chance: 90%).
"""

import math

from cnnx.findings import figures
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.runs import seeded
from cnnx.findings.verdict import Comparison

LRS = (0.02, 0.2, 2.0)
TARGET = 90.0  # training top-1 (%) to reach
TRAINS_BELOW = 50.0  # training error (%) that counts as trained
NORMS = (("batch", "BN"), ("none", "no BN"))


def _arm(norm_label: str, lr: float) -> str:
    return f"{norm_label}, lr {lr:g}"


def steps_to(rec, target: float = TARGET) -> float:
    """First logged step whose training top-1 reaches `target`; the run's length + 1 when
    none does (a lower bound: it did not get there)."""
    steps, values = rec.curve("train/top1")
    for step, value in zip(steps, values):
        if value >= target:
            return float(step)
    total = rec.results.get("step") or (steps[-1] if steps else 0)
    return float(total + 1)


def trains(rec) -> bool:
    _, values = rec.curve("train/top1")
    return rec.status == "completed" and bool(values) and 100.0 - values[-1] < TRAINS_BELOW


class BatchNorm(Finding):
    name = "batchnorm"
    number = 3
    title = "BatchNorm: faster, and trainable at higher learning rates"
    claim = (
        "With Batch Normalization a network reaches a given accuracy in fewer steps and "
        "trains at learning rates at which the same network without it diverges."
    )
    source = "Ioffe & Szegedy 2015, Batch Normalization, §4.2.1 and Fig. 2 (BN-x5, BN-x30)"
    rule = (
        "Per seed: (a) the fewest steps over the learning rates to reach 90% training top-1 "
        "(a run that never does counts its length + 1), BN below no-BN by more than the "
        "spread and a floor of one epoch; (b) log10 of the largest learning rate that trains "
        "(no divergence, final training error < 50%; none: one decade below the grid), BN "
        "above no-BN by more than the spread and a floor of half a decade."
    )
    budget = "12 runs (2 × 3 learning rates × 2 seeds) of 440 steps at 16 px: about 10 minutes."

    def runs(self, scale):
        lrs = (0.2,) if scale.smoke else LRS
        runs = []
        for norm, norm_label in NORMS:
            for lr in lrs:
                config = f"configs/findings.py:batchnorm,norm={norm},lr={lr:g}"
                config += ",paper" if scale.paper else ""
                runs += seeded(
                    f"batchnorm_{norm}_lr{lr:g}",
                    config,
                    _arm(norm_label, lr),
                    scale.repeat(2),
                    scale.shrink(),
                    tags=(("norm", norm_label), ("lr", lr)),
                )
        return runs

    def measure(self, records, scale):
        recs = list(records.values())
        values = {
            r.run.name: {
                "arm": r.run.label,
                "seed": r.run.seed,
                "status": r.status,
                "train_error": 100.0 - r.final("train/top1") if r.curve()[0] else math.nan,
                "steps_to_90": steps_to(r),
                "trains": trains(r),
            }
            for r in recs
        }
        seeds = sorted({r.run.seed for r in recs})
        lrs = sorted({r.run.tag("lr") for r in recs})
        floor_steps = 2 * min(_log_every(r) for r in recs)  # the small scale: one epoch

        def fastest(norm, seed):
            return min(
                steps_to(r) for r in recs if r.run.tag("norm") == norm and r.run.seed == seed
            )

        def largest(norm, seed):
            ok = [
                r.run.tag("lr")
                for r in recs
                if r.run.tag("norm") == norm and r.run.seed == seed and trains(r)
            ]
            return math.log10(max(ok)) if ok else math.log10(min(lrs)) - 1.0

        comparisons = [
            Comparison(
                f"with BN, {TARGET:g}% training top-1 is reached in fewer steps",
                f"fewest steps to {TARGET:g}% training top-1 over the learning rates",
                "no BN",
                "BN",
                [fastest("no BN", s) for s in seeds],
                [fastest("BN", s) for s in seeds],
                "less",
                floor_steps,
            ),
            Comparison(
                "BN trains at a larger learning rate than no BN",
                "log10 of the largest base learning rate that trains",
                "no BN",
                "BN",
                [largest("no BN", s) for s in seeds],
                [largest("BN", s) for s in seeds],
                "greater",
                0.5,
            ),
        ]
        diverged = [r.run.label for r in recs if r.status == "diverged"]
        stalled = [r.run.label for r in recs if r.status == "completed" and not trains(r)]
        notes = [f"Diverged: {', '.join(dict.fromkeys(diverged))}."] if diverged else []
        if stalled:
            notes.append(
                f"Did not train without diverging (final training error >= {TRAINS_BELOW:g}%): "
                f"{', '.join(dict.fromkeys(stalled))}."
            )
        return Measurement(values, comparisons, notes)

    def figure(self, records, measurement, path):
        recs = list(records.values())
        first = min(r.run.seed for r in recs)
        groups = {r.run.label: [r] for r in recs if r.run.seed == first}
        styles = {label: "-" if label.startswith("BN") else "--" for label in groups}
        with figures.figure(path, ncols=2, width=10) as (_, (left, right)):
            figures.curves(left, groups, "train/top1", styles=styles)
            left.set_ylabel("training error (%)")
            left.set_title(f"training error, seed {first} (dashed: no BN; x: diverged)", fontsize=9)
            left.legend(fontsize=7)
            for i, (_, norm_label) in enumerate(NORMS):
                for r in recs:
                    if r.run.tag("norm") == norm_label:
                        err = measurement.values[r.run.name]["train_error"]
                        err = 100.0 if math.isnan(err) or r.status == "diverged" else err
                        right.plot(
                            r.run.tag("lr"),
                            err,
                            "o" if r.status != "diverged" else "x",
                            color=f"C{i}",
                            label=norm_label if r.run.seed == first else None,
                        )
            right.set_xscale("log")
            lrs = sorted({r.run.tag("lr") for r in recs})
            right.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
            right.minorticks_off()
            right.set_xlabel("base learning rate (per 256 images)")
            right.set_ylabel("final training error (%) (x: diverged, drawn at 100)")
            right.grid(True, alpha=0.3)
            handles, labels = right.get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            right.legend(unique.values(), unique.keys(), fontsize=8)


def _log_every(rec) -> int:
    steps, _ = rec.curve("train/top1")
    return steps[0] if steps else 1


register(BatchNorm())
