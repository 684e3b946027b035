"""Finding 4, initialisation (He et al. 2015 "Delving deep", Fig. 3; Glorot & Bengio 2010):
a deep plain ReLU network without BatchNorm trains from He's initialisation, while Glorot's
(variance halved at every ReLU layer) and a fixed N(0, 0.01) stall.

Runs: plain32_cifar without BN (31 convolutions and the classifier, close to Delving deep's
30-layer net), convolutions initialised he / glorot / normal (configs/findings.py:init), the
same recipe for all: lr 0.01 at batch 128 (Delving deep's 1e-2), weight decay 5e-4, 20
epochs. The classifier keeps Flax's default initialisation in all three.
"""

import math

from cnnx.findings import figures
from cnnx.findings.degradation import by_label, train_error
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.runs import seeded
from cnnx.findings.verdict import Comparison

INITS = (("he", "He"), ("glorot", "Glorot"), ("normal", "N(0, 0.01)"))


class Initialisation(Finding):
    name = "initialisation"
    number = 4
    title = "Initialisation of a deep plain ReLU net: He vs Glorot vs N(0, 0.01)"
    claim = (
        "A deep plain ReLU network without normalisation learns from He initialisation "
        "(variance 2/fan), while Glorot's (1/fan) and a fixed N(0, 0.01) let the signal "
        "vanish with depth and the network stalls."
    )
    source = (
        'He et al. 2015, "Delving Deep into Rectifiers", §2.2 and Fig. 3 (30 layers: Xavier '
        "stalls); Glorot & Bengio 2010; Krizhevsky et al. 2012 (N(0, 0.01))"
    )
    rule = (
        "Training error of the last epoch per seed: He below Glorot, and He below N(0, 0.01), "
        "each by more than the seed spread and a floor of 0.5 points."
    )
    budget = "6 runs (3 initialisations × 2 seeds) of 440 steps at 16 px: about 7 minutes."

    def runs(self, scale):
        runs = []
        for init, label in INITS:
            config = f"configs/findings.py:init,init={init}" + (",paper" if scale.paper else "")
            shrink = scale.shrink(model__depth=8)
            runs += seeded(f"init_{init}", config, label, scale.repeat(2), shrink)
        return runs

    def measure(self, records, scale):
        values = {}
        for r in records.values():
            _, losses = r.curve("train/loss")
            values[r.run.name] = {
                "init": r.run.label,
                "seed": r.run.seed,
                "status": r.status,
                "train_error": train_error(r),
                "first_loss": losses[0] if losses else math.nan,
                "last_loss": losses[-1] if losses else math.nan,
                "test_error": 100.0 - r.final("eval/top1"),
            }
        groups = by_label(records)

        # A run without a logged error counts as chance (90% error on ten classes).
        errors = {
            label: [90.0 if math.isnan(e) else e for e in map(train_error, recs)]
            for label, recs in groups.items()
        }
        comparisons = [
            Comparison.between(
                f"He initialisation ends at a lower training error than {other}",
                "training error of the last epoch (%)",
                errors,
                other,
                "He",
                "less",
                0.5,
            )
            for other in ("Glorot", "N(0, 0.01)")
        ]
        # Chance on ten classes: loss ln 10 = 2.303.
        stalled = [
            f"{row['init']} (seed {row['seed']})"
            for row in values.values()
            if abs(row["last_loss"] - math.log(10)) < 0.05
        ]
        notes = []
        if stalled:
            notes.append(
                "Still at chance at the end (training loss within 0.05 of ln 10): "
                + ", ".join(stalled)
                + "."
            )
        return Measurement(values, comparisons, notes)

    def figure(self, records, measurement, path):
        groups = by_label(records)
        with figures.figure(path, ncols=2, width=10) as (_, (left, right)):
            figures.curves(left, groups, "train/top1")
            left.set_ylabel("training error (%)")
            left.set_title("training error, plain net without BN", fontsize=10)
            left.legend(fontsize=8)
            figures.curves(right, groups, "train/loss", error=False)
            right.set_ylabel("training loss")
            right.set_yscale("log")
            right.set_title("training loss (log)", fontsize=10)


register(Initialisation())
