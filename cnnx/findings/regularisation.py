"""Finding 5, regularisation (Krizhevsky et al. 2012 §4; Srivastava et al. 2014): on a small
training set, dropout and data augmentation narrow the gap between training and test
accuracy.

Runs: LeNet-5 on a fifth of the digits' training split (288 images; paper: 10% of CIFAR-10)
with the digits recipe of configs/default.py for 150 epochs (configs/findings.py:
regularisation), in four arms: neither, dropout 0.5 before the classifier (LeNet-5's one
dropout place), augmentation (random translation by up to 2 px, the recipe's own; CIFAR: crop
+ flip), both. The gap is the top-1 on the training images (without augmentation, evaluated
after training) minus the test top-1.
"""

from cnnx.findings import figures
from cnnx.findings.degradation import by_label
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.runs import seeded
from cnnx.findings.verdict import Comparison

ARMS = (
    ("none", 0.0, False),
    ("dropout", 0.5, False),
    ("augment", 0.0, True),
    ("dropout + augment", 0.5, True),
)


def train_top1(rec) -> float:
    """Top-1 (%) of the final weights on the run's training split, test-time preprocessing."""
    from cnnx.sweeps.fixres import evaluate_at, evaluator_name
    from cnnx.sweeps.spec import apply_overrides
    from cnnx.train.checkpoint import load_variables

    config = rec.config()
    on_train = apply_overrides(config, {"data.eval_split": config.data.train_split})
    size = config.data.image_size
    metrics = evaluate_at(on_train, load_variables(rec.workdir), size)
    return float(metrics[f"{evaluator_name(size)}/top1"])


class Regularisation(Finding):
    name = "regularisation"
    number = 5
    title = "Regularisation: dropout and augmentation narrow the train/test gap"
    claim = (
        "On a small training set a network overfits: training accuracy far above test "
        "accuracy. Dropout and data augmentation narrow that gap."
    )
    source = (
        "Krizhevsky et al. 2012, ImageNet Classification with Deep CNNs, §4.1-4.2; "
        "Srivastava et al. 2014, Dropout, §6"
    )
    rule = (
        "Gap = training top-1 (clean training images) − test top-1, per seed: dropout below "
        "none, and augmentation below none, each by more than the seed spread and a floor of "
        "1 point."
    )
    budget = "12 runs (4 arms × 3 seeds) of LeNet-5, 600 steps at 32 px: about 3 minutes."

    def runs(self, scale):
        runs = []
        for label, dropout, augment in ARMS:
            config = f"configs/findings.py:regularisation,dropout={dropout:g},augment={augment}" + (
                ",paper" if scale.paper else ""
            )
            name = f"regularisation_{label.replace(' + ', '_')}"
            runs += seeded(name, config, label, scale.repeat(3), scale.shrink(image_size=32))
        return runs

    def measure(self, records, scale):
        values = {}
        for r in records.values():
            train = train_top1(r) if r.status == "completed" else float("nan")
            test = r.final("eval/top1")
            values[r.run.name] = {
                "arm": r.run.label,
                "seed": r.run.seed,
                "train_top1": train,
                "test_top1": test,
                "gap": train - test,
            }
        groups = by_label(records)

        gaps = {label: [values[r.run.name]["gap"] for r in recs] for label, recs in groups.items()}
        comparisons = [
            Comparison.between(
                f"{arm} narrows the train/test gap",
                "training top-1 − test top-1 (points)",
                gaps,
                "none",
                arm,
                "less",
                1.0,
            )
            for arm in ("dropout", "augment")
        ]
        return Measurement(values, comparisons)

    def figure(self, records, measurement, path):
        groups = by_label(records)
        v = measurement.values
        with figures.figure(path, ncols=2, width=10) as (_, (left, right)):
            figures.seed_points(
                left,
                {label: [v[r.run.name]["gap"] for r in recs] for label, recs in groups.items()},
                "training top-1 − test top-1 (points)",
            )
            left.set_title("train/test gap (dots: seeds)", fontsize=10)
            figures.seed_points(
                right,
                {
                    label: [v[r.run.name]["test_top1"] for r in recs]
                    for label, recs in groups.items()
                },
                "test top-1 (%)",
            )
            right.set_title("test top-1", fontsize=10)


register(Regularisation())
