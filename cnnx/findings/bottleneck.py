"""Finding 6, 1×1 convolutions as bottlenecks (Lin et al. 2013 NIN; Szegedy et al. 2014 §4;
He et al. 2015 §4.1 "deeper bottleneck architectures"): reducing the channels with a 1×1
convolution before the 3×3 one cuts parameters and MACs at similar accuracy.

Runs: resnet20_cifar (three basic blocks of two 3×3 convolutions per stage) against the same
network with bottleneck blocks (1×1 to a quarter of the stage's width, 3×3, 1×1 back: depth
29, the same blocks and the same features between them), and that bottleneck net at twice the
width (configs/findings.py:bottleneck), 20 epochs on the digits at 16 px. Parameters and MACs
come from the analysis tools (results.json's count; cnnx.analysis.flops at the input size,
three input channels as registered); accuracy is the final test top-1.
"""

import math

from cnnx.findings import figures
from cnnx.findings.degradation import by_label
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.runs import seeded
from cnnx.findings.verdict import Comparison

BASIC = "basic (two 3×3)"
# label: (block, width multiplier)
VARIANTS = {
    BASIC: ("basic", 1.0),
    "bottleneck": ("bottleneck", 1.0),
    "bottleneck, width ×2": ("bottleneck", 2.0),
}
SMOKE_DEPTH = {"basic": 8, "bottleneck": 11}  # one block per stage


def macs(rec) -> float:
    """MACs of one image's forward pass of the run's model, in millions."""
    from cnnx.analysis.flops import count_macs

    c = rec.config()
    options = {k: c.model[k] for k in ("block", "depth", "width_mult") if k in c.model}
    return count_macs(c.model.name, c.data.image_size, **options) / 1e6


class Bottleneck(Finding):
    name = "bottleneck"
    number = 6
    title = "1×1 bottlenecks: fewer parameters and MACs at similar accuracy"
    claim = (
        "Reducing the channels with 1×1 convolutions before the spatial ones (network in "
        "network, Inception's reductions, ResNet's bottleneck blocks) cuts parameters and "
        "computation at similar accuracy."
    )
    source = (
        "Lin et al. 2013, Network in Network; Szegedy et al. 2014, Going Deeper with "
        "Convolutions, §4; He et al. 2015, §4.1 and Fig. 5"
    )
    rule = (
        "Basic vs bottleneck net of the same blocks and widths: log2 of the parameters and of "
        "the MACs at least 1 lower (halved or better); and test top-1 per seed similar: the "
        "difference of the means and the seed spread both within 1 point."
    )
    budget = "6 runs (3 nets × 2 seeds) of 440 steps at 16 px: about 5 minutes."

    def runs(self, scale):
        runs = []
        for label, (block, width) in VARIANTS.items():
            if scale.smoke and width != 1.0:
                continue  # the two compared nets only
            config = f"configs/findings.py:bottleneck,block={block},width={width:g}"
            config += ",paper" if scale.paper else ""
            shrink = scale.shrink(model__depth=SMOKE_DEPTH[block])
            runs += seeded(f"bottleneck_{block}_w{width:g}", config, label, scale.repeat(2), shrink)
        return runs

    def measure(self, records, scale):
        groups = by_label(records)
        cost = {label: macs(recs[0]) for label, recs in groups.items()}
        values = {
            r.run.name: {
                "network": r.run.label,
                "seed": r.run.seed,
                "params": r.results.get("num_params", math.nan),
                "MMACs": cost[r.run.label],
                "test_top1": r.final("eval/top1"),
            }
            for r in records.values()
        }
        first = {label: values[recs[0].run.name] for label, recs in groups.items()}

        top1 = {
            label: [values[r.run.name]["test_top1"] for r in recs] for label, recs in groups.items()
        }

        comparisons = [
            Comparison(
                f"the bottleneck net has at most half the {what}",
                f"log2 of the {what}",
                BASIC,
                "bottleneck",
                [math.log2(first[BASIC][key])],
                [math.log2(first["bottleneck"][key])],
                "less",
                1.0,
            )
            for what, key in (("parameters", "params"), ("MACs", "MMACs"))
        ]
        comparisons.append(
            Comparison.between(
                "the bottleneck net is about as accurate",
                "test top-1 (%)",
                top1,
                BASIC,
                "bottleneck",
                "similar",
                1.0,
            )
        )
        return Measurement(values, comparisons)

    def figure(self, records, measurement, path):
        groups = by_label(records)
        with figures.figure(path, ncols=2, width=10) as (_, (left, right)):
            figures.accuracy_against_cost(left, groups, measurement.values, log=True)
            left.set_title("accuracy against cost (dots: seeds)", fontsize=10)
            figures.curves(right, groups, "train/top1")
            right.set_ylabel("training error (%)")
            right.set_title("training error", fontsize=10)
            right.legend(fontsize=7)


register(Bottleneck())
