"""Finding 1, degradation (He et al. 2015, Fig. 1 and Fig. 6): a deeper plain network trains
to a *higher* training error, a deeper residual one to a lower one.

Runs: plain-20, plain-56, ResNet-20, ResNet-56 of configs/degradation_cifar.py. Small: its
digits form at 16 px for 40 epochs (880 steps) with one epoch of linear warm-up for all four
(He et al. §4.2 warm ResNet-110 up for about one CIFAR-10 epoch; the shipped 10-epoch form
without it leaves ResNet-56 at ~70% error: issue 29's walk). Paper: CIFAR-10, the paper's
recipe. Measured: the training error of the last epoch (`train/top1` of the last log, i.e.
averaged over its steps, augmented batches as in the paper's curves) and the final test error.
"""

from cnnx.findings import figures
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.runs import seeded
from cnnx.findings.verdict import Comparison

DEPTHS = (20, 56)
SMOKE_DEPTH = {20: 8, 56: 14}  # the same contrast, cut down
NETS = [(kind, depth) for depth in DEPTHS for kind in ("plain", "resnet")]


def net_label(kind: str, depth: int) -> str:
    return f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}"


def degradation_runs(scale) -> list:
    """The four networks × the scale's seeds (shared with the vanishing-gradients finding)."""
    runs = []
    for kind, depth in NETS:
        net = f"{kind}{depth}"
        if scale.paper:
            config = f"configs/degradation_cifar.py:{net}"
        elif scale.smoke:
            config = f"configs/degradation_cifar.py:{net},smoke"
        else:
            config = f"configs/degradation_cifar.py:{net},smoke,epochs=40,warmup=1"
        runs += seeded(
            f"degradation_{net}",
            config,
            net_label(kind, depth),
            scale.repeat(2),
            scale.shrink(model__depth=SMOKE_DEPTH[depth]),
            tags=(("model", f"{net}_cifar"), ("depth", depth)),
        )
    return runs


def by_label(records: dict) -> dict:
    """label -> [RunRecord over seeds], in run order."""
    groups = {}
    for rec in records.values():
        groups.setdefault(rec.run.label, []).append(rec)
    return groups


def train_error(rec) -> float:
    """Training error (%) of the last logged interval; a diverged run's last finite one."""
    _, values = rec.curve("train/top1")
    return 100.0 - values[-1] if values else float("nan")


class Degradation(Finding):
    name = "degradation"
    number = 1
    title = "Degradation: deeper plain nets train worse, deeper residual nets better"
    claim = (
        "Going from 20 to 56 layers, a plain network reaches a higher training error (the "
        "degradation problem: an optimisation difficulty, not overfitting), while a residual "
        "network reaches a lower one."
    )
    source = "He et al. 2015, Deep Residual Learning, §4.2, Fig. 1 and Fig. 6 (CIFAR-10)"
    rule = (
        "Training error of the last epoch, per seed. plain-56 above plain-20, and ResNet-56 "
        "below ResNet-20, each by more than the seed spread and a floor of 0.5 points."
    )
    budget = "8 runs (4 networks × 2 seeds) of 880 steps at 16 px: about 21 minutes."

    def runs(self, scale):
        return degradation_runs(scale)

    def measure(self, records, scale):
        groups = by_label(records)
        values = {
            rec.run.name: {
                "network": rec.run.label,
                "seed": rec.run.seed,
                "status": rec.status,
                "train_error": train_error(rec),
                "test_error": 100.0 - rec.final("eval/top1"),
                "steps": rec.results.get("step"),
            }
            for rec in records.values()
        }

        errors = {label: [train_error(r) for r in recs] for label, recs in groups.items()}
        metric = "training error of the last epoch (%)"
        comparisons = [
            Comparison.between(
                f"{deep} ends at a {word} training error than {shallow}",
                metric,
                errors,
                shallow,
                deep,
                direction,
                0.5,
            )
            for shallow, deep, word, direction in (
                ("plain-20", "plain-56", "higher", "greater"),
                ("ResNet-20", "ResNet-56", "lower", "less"),
            )
        ]
        notes = [
            f"{c.a_label} and {c.b_label} both end below 1% training error: the task leaves "
            "the deeper net no room to train better."
            for c in comparisons
            if max(c.a + c.b) < 1.0
        ]
        return Measurement(values, comparisons, notes)

    def figure(self, records, measurement, path):
        groups = by_label(records)
        styles = {label: "--" if label.startswith("plain") else "-" for label in groups}
        with figures.figure(path, ncols=2, width=10) as (_, (left, right)):
            figures.curves(left, groups, "train/top1", styles=styles)
            left.set_ylabel("training error (%)")
            left.set_title("training error (dashed: plain)", fontsize=10)
            left.legend(fontsize=8)
            figures.eval_curves(right, groups, styles=styles)
            right.set_ylabel("test error (%)")
            right.set_title("test error at the evaluations", fontsize=10)


register(Degradation())
