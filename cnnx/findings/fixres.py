"""Finding 8, FixRes (Touvron et al. 2019): trained with random-resized crops, a network is
most accurate when tested *above* its training resolution; fine-tuning the classifier and
BatchNorm at the test resolution recovers what the resolution change costs.

Runs: the FixRes protocol of cnnx/sweeps/fixres.py on configs/sweeps/fixres.py (small:
`:digits`, resnet20_cifar trained at 24 px with random-resized crops, tested at 16-40 px,
fine-tuned 80 steps at each; paper: `:imagenet`, ResNet-50 at 128 and 224 px), one
protocol per seed (the training seed).
"""

import statistics

from cnnx.findings import figures
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.runs import Run
from cnnx.findings.verdict import Comparison

# The protocol cut to seconds: one 12 px training run, three test sizes, 2 fine-tuning steps.
SMOKE = (
    ("train.train.num_steps", 3),
    ("train.train.batch_size", 16),
    ("train.train.log_every_steps", 1),
    ("train.eval.batch_size", 16),
    ("train.data.eval_split", "test[:16]"),
    ("train.ckpt.every_steps", 1000),
    ("train.schedule.warmup_epochs", 0.0),
    ("train_resolutions", (12,)),
    ("test_resolutions", (8, 12, 16)),
    ("finetune.steps", 2),
    ("finetune.batch_size", 16),
)


def _table(rec, phase: str) -> dict[int, dict[int, float]]:
    """{R_train: {R_test: top-1}} of fixres.json (any form it was written in)."""
    from cnnx.sweeps.fixres import parse_table  # JAX and the trainer: only when measuring

    return parse_table(rec.results)[phase]


class FixRes(Finding):
    name = "fixres"
    number = 8
    title = "FixRes: test above the training resolution, then fine-tune at it"
    claim = (
        "Random-resized-crop training makes objects look larger than the centre crop at "
        "test time, so accuracy peaks at a test resolution above the training one; "
        "fine-tuning the classifier and BatchNorm at the test resolution recovers the "
        "accuracy lost to the resolution change."
    )
    source = (
        "Touvron et al. 2019, Fixing the train-test resolution discrepancy, §3 (Fig. 1, "
        "Table 1) and §4"
    )
    rule = (
        "For the smallest training resolution, per seed: (a) the best top-1 at a test "
        "resolution above it minus the top-1 at it; (b) the mean top-1 over the other test "
        "resolutions after fine-tuning minus before. Each above zero by more than the seed "
        "spread and a floor of 1 point (3.6 of the 359 test digits)."
    )
    budget = (
        "2 protocols (2 seeds), each 400 training steps, 6 evaluations and 6 × 80 "
        "fine-tuning steps: about 5 minutes."
    )

    def runs(self, scale):
        config = "configs/sweeps/fixres.py:" + ("imagenet" if scale.paper else "digits")
        return [
            Run(
                name=f"fixres_s{seed}",
                config=config,
                overrides=(("train.seed", seed), *(SMOKE if scale.smoke else ())),
                kind="fixres",
                label="FixRes",
                seed=seed,
            )
            for seed in scale.repeat(2)
        ]

    def measure(self, records, scale):
        values, peak, before_after = {}, {}, {}
        for rec in records.values():
            before, after = _table(rec, "before"), _table(rec, "after")
            r_train = min(before)
            cells = before[r_train]
            above = [t for t in cells if t > r_train]
            others = [t for t in cells if t != r_train and t in after.get(r_train, {})]
            best_above = max(cells[t] for t in above) if above else float("nan")
            peak[rec.run.name] = (cells[r_train], best_above)
            before_after[rec.run.name] = (
                statistics.fmean(cells[t] for t in others),
                statistics.fmean(after[r_train][t] for t in others),
            )
            values[rec.run.name] = {
                "seed": rec.run.seed,
                "train_res": r_train,
                **{f"before@{t}": cells[t] for t in sorted(cells)},
                **{f"after@{t}": v for t, v in sorted(after.get(r_train, {}).items())},
            }
        names = list(records)
        comparisons = [
            Comparison(
                claim,
                metric,
                a,
                b,
                [p[n][0] for n in names],
                [p[n][1] for n in names],
                "greater",
                1.0,
            )
            for claim, metric, a, b, p in (
                (
                    "before fine-tuning, top-1 peaks at a test resolution above the training one",
                    "test top-1 (%)",
                    "at the training resolution",
                    "best above it",
                    peak,
                ),
                (
                    "fine-tuning at the test resolution recovers accuracy",
                    "mean test top-1 over the other test resolutions (%)",
                    "before fine-tuning",
                    "after",
                    before_after,
                ),
            )
        ]
        return Measurement(values, comparisons)

    def figure(self, records, measurement, path):
        with figures.figure(path) as (_, (ax,)):
            for j, rec in enumerate(records.values()):
                before, after = _table(rec, "before"), _table(rec, "after")
                r_train = min(before)
                for phase, table, style in (("before", before, "--o"), ("after", after, "-s")):
                    cells = table.get(r_train, {})
                    xs = sorted(cells)
                    ax.plot(
                        xs,
                        [cells[x] for x in xs],
                        style,
                        color=f"C{j}",
                        markersize=4,
                        label=f"seed {rec.run.seed}, {phase} fine-tuning",
                    )
                ax.axvline(r_train, color="grey", alpha=0.4)
            ax.set_xlabel("test resolution (px); grey line: training resolution")
            ax.set_ylabel("test top-1 (%)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
            ax.set_title("top-1 against test resolution", fontsize=10)


register(FixRes())
