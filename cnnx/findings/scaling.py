"""Finding 7, compound scaling (Tan & Le 2019, Fig. 3 and Table 3): at matched MACs, scaling
depth, width and resolution together beats scaling any one of them.

Runs: a baseline scaled to about twice its MACs four ways (configs/findings.py:scaling):
depth ×2, width ×√2, resolution ×√2, and the paper's compound step φ = 1 (α = 1.2 depth,
β = 1.1 width, γ = 1.15 resolution: α·β²·γ² ≈ 2). Small: resnet20_cifar on the digits at 16
px, 20 epochs; paper: EfficientNet-B0 on ImageNet at 224 px with configs/efficientnet.py's
recipe. Depth and width go through cnnx.models.scaling (`round_repeats`: ceil; `round_filters`:
multiples of 8), so the realised MACs (cnnx.analysis.flops) differ from the nominal ×2 and are
reported beside each result. Caveat of the small scale: the digits are 8×8 images, so a higher
input resolution adds no information, only computation.
"""

import math

from cnnx.findings import figures
from cnnx.findings.degradation import by_label
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.runs import seeded
from cnnx.findings.verdict import Comparison

COMPOUND = "compound (1.2, 1.1, 1.15)"
SINGLE = ("depth ×2", "width ×1.41", "resolution ×1.41")
# label: (depth, width, resolution) multipliers
POINTS = {
    "baseline": (1.0, 1.0, 1.0),
    "depth ×2": (2.0, 1.0, 1.0),
    "width ×1.41": (1.0, round(math.sqrt(2), 3), 1.0),
    "resolution ×1.41": (1.0, 1.0, round(math.sqrt(2), 3)),
    COMPOUND: (1.2, 1.1, 1.15),
}
MATCHED = 0.25  # realised MACs within ±25% of each other count as matched


def macs(rec) -> float:
    """MACs of one image's forward pass of the run's model at its resolution, in millions."""
    from cnnx.analysis.flops import count_macs

    c = rec.config()
    return (
        count_macs(
            c.model.name,
            c.data.image_size,
            width_mult=c.model.width_mult,
            depth_mult=c.model.depth_mult,
        )
        / 1e6
    )


class Scaling(Finding):
    name = "scaling"
    number = 7
    title = "Compound scaling beats scaling one dimension at matched MACs"
    claim = (
        "For a given increase in computation, scaling depth, width and input resolution "
        "together in a fixed ratio improves accuracy more than scaling any one of them."
    )
    source = "Tan & Le 2019, EfficientNet, §3.3, Fig. 3 and Table 3"
    rule = (
        "Test top-1 per seed: the compound point above each single-dimension point (depth, "
        "width, resolution) by more than the seed spread and a floor of 1 point; realised "
        "MACs are reported, and a pair more than 25% apart is noted as not matched."
    )
    budget = (
        "10 runs (5 points × 2 seeds) of 440 steps, the scaled ones at ~2× the MACs: about "
        "8 minutes."
    )

    def runs(self, scale):
        base = 8 if scale.smoke else 16
        runs = []
        for label, (d, w, r) in POINTS.items():
            config = f"configs/findings.py:scaling,depth={d:g},width={w:g},res={r:g}"
            config += ",paper" if scale.paper else ""
            shrink = scale.shrink(image_size=round(base * r), model__depth=8)
            runs += seeded(f"scaling_d{d:g}_w{w:g}_r{r:g}", config, label, scale.repeat(2), shrink)
        return runs

    def measure(self, records, scale):
        groups = by_label(records)
        cost = {label: macs(recs[0]) for label, recs in groups.items()}
        base = cost["baseline"]
        values = {
            r.run.name: {
                "point": r.run.label,
                "seed": r.run.seed,
                "image_size": r.results.get("image_size"),
                "params": r.results.get("num_params", math.nan),
                "MMACs": cost[r.run.label],
                "MACs_vs_baseline": cost[r.run.label] / base,
                "test_top1": r.final("eval/top1"),
            }
            for r in records.values()
        }

        top1 = {
            label: [values[r.run.name]["test_top1"] for r in recs] for label, recs in groups.items()
        }

        comparisons, notes = [], []
        for single in SINGLE:
            comparisons.append(
                Comparison.between(
                    f"compound scaling beats {single}",
                    "test top-1 (%)",
                    top1,
                    single,
                    COMPOUND,
                    "greater",
                    1.0,
                )
            )
            ratio = cost[COMPOUND] / cost[single]
            if abs(ratio - 1.0) > MATCHED:
                notes.append(
                    f"MACs not matched: compound {cost[COMPOUND]:.2f} M vs {single} "
                    f"{cost[single]:.2f} M (×{ratio:.2f}) after rounding."
                )
        return Measurement(values, comparisons, notes)

    def figure(self, records, measurement, path):
        groups = by_label(records)
        with figures.figure(path, ncols=2, width=10) as (_, (left, right)):
            figures.accuracy_against_cost(left, groups, measurement.values)
            left.set_title("accuracy against realised MACs (dots: seeds)", fontsize=10)
            figures.curves(right, groups, "train/top1")
            right.set_ylabel("training error (%)")
            right.set_title("training error", fontsize=10)


register(Scaling())
