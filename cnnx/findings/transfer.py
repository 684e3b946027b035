"""Finding 9, transfer ("avoid training from scratch"; Yosinski et al. 2014): on a small
training set, starting from a network trained on a related task beats starting from random
weights, and loading the source's first k stages bottom-up shows how far up its features
still transfer.

Runs (configs/findings.py:transfer): a source resnet20_cifar trained on a related task (small:
the digits relabelled even / odd, `digits:parity`, all 1,438 training digits; paper:
CIFAR-100), then the target, 72 training digits (5%; paper: 5% of CIFAR-10) for 150 steps,
from scratch (k = 0) or with the first k of (stem + stage 1, stage 2, stage 3) loaded from the
source and a fresh classifier, everything trained with the same recipe.
"""

from cnnx.findings import figures
from cnnx.findings.degradation import by_label
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.runs import Run, seeded
from cnnx.findings.verdict import Comparison

SOURCE = "transfer_source"
STAGES = (0, 1, 2, 3)


def label(k: int) -> str:
    return "scratch" if k == 0 else f"first {k} stage{'s' if k > 1 else ''} loaded"


class Transfer(Finding):
    name = "transfer"
    number = 9
    title = "Transfer: fine-tuning beats training from scratch on a small set"
    claim = (
        "With little data, fine-tuning a network trained on a related task beats training it "
        "from scratch; loading the source's layers bottom-up, the gain grows while the loaded "
        "features are still general and stops where they become specific to the source task."
    )
    source = (
        "Yosinski et al. 2014, How transferable are features in deep neural networks?, Fig. 2 "
        "(AnB+); the seeds' 'avoid training from scratch'"
    )
    rule = (
        "Test top-1 per seed: (a) all three stages loaded above scratch, (b) all three above "
        "only the first, each by more than the seed spread and a floor of 1 point; the top-1 "
        "for each k shows where the gain stops."
    )
    budget = (
        "1 source run of 440 steps and 12 target runs (4 k × 3 seeds) of 150 steps: about "
        "4 minutes."
    )

    def runs(self, scale):
        paper = ",paper" if scale.paper else ""
        source = Run(
            name=f"{SOURCE}_s0",
            config=f"configs/findings.py:transfer,source{paper}",
            overrides=(("seed", 0), *scale.shrink()),
            label="source",
        )
        runs = [source]
        for k in STAGES:
            config = f"configs/findings.py:transfer,load={k}{paper}"
            if k:
                config += f",source_run={{runs}}/{source.name}"
            shrink = scale.shrink()
            runs += seeded(
                f"transfer_load{k}", config, label(k), scale.repeat(3), shrink, (("load", k),)
            )
        return runs

    def measure(self, records, scale):
        targets = {n: r for n, r in records.items() if r.run.label != "source"}
        source = next(r for r in records.values() if r.run.label == "source")
        values = {
            source.run.name: {"k": "source", "seed": 0, "test_top1": source.final("eval/top1")}
        }
        values.update(
            {
                r.run.name: {
                    "k": r.run.tag("load"),
                    "seed": r.run.seed,
                    "test_top1": r.final("eval/top1"),
                }
                for r in targets.values()
            }
        )
        groups = by_label(targets)

        top1 = {
            name: [values[r.run.name]["test_top1"] for r in recs] for name, recs in groups.items()
        }
        comparisons = [
            Comparison.between(
                f"{label(3)} beats {label(k)}",
                "test top-1 on the small target (%)",
                top1,
                label(k),
                label(3),
                "greater",
                1.0,
            )
            for k in (0, 1)
        ]
        means = {k: sum(top1[label(k)]) / len(top1[label(k)]) for k in STAGES}
        notes = [
            "Mean test top-1 by stages loaded: "
            + ", ".join(f"k={k}: {means[k]:.2f}" for k in STAGES)
            + f" (source task, its own test split: {values[source.run.name]['test_top1']:.2f})."
        ]
        return Measurement(values, comparisons, notes)

    def figure(self, records, measurement, path):
        targets = {n: r for n, r in records.items() if r.run.label != "source"}
        groups = by_label(targets)
        v = measurement.values
        with figures.figure(path, ncols=2, width=10) as (_, (left, right)):
            for k in STAGES:
                ys = [v[r.run.name]["test_top1"] for r in groups[label(k)]]
                left.plot([k] * len(ys), ys, "o", color="C0")
                left.plot(k, sum(ys) / len(ys), "_", color="C3", markersize=20)
            left.set_xticks(list(STAGES))
            left.set_xticklabels(["scratch", "stem+1", "+2", "+3"])
            left.set_xlabel("source stages loaded (bottom-up)")
            left.set_ylabel("test top-1 on the small target (%)")
            left.grid(True, alpha=0.3)
            left.set_title("dots: seeds; bars: means", fontsize=10)
            figures.curves(right, groups, "train/loss", error=False)
            right.set_ylabel("training loss")
            right.set_yscale("log")
            right.legend(fontsize=7)
            right.set_title("training loss on the small target", fontsize=10)


register(Transfer())
