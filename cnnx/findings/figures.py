"""The findings' figures: curves of several runs overlaid, and per-arm values over seeds.

matplotlib with the Agg backend (no display); small PNGs (about 7×4 inches at 80 dpi), so
the report page and docs/findings/ stay light.
"""

import contextlib
import os

DPI = 80


@contextlib.contextmanager
def figure(path: str, ncols: int = 1, width: float = 7.0, height: float = 4.0):
    """Yields a list of `ncols` axes side by side; saves the PNG to `path` on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    try:
        yield fig, list(axes[0])
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def curves(ax, groups: dict, key: str = "train/top1", error: bool = True, styles=None) -> None:
    """One curve per run of `train_metrics.jsonl`'s `key` against steps, a colour per group.

    Args:
      ax: matplotlib axes.
      groups: label -> list of RunRecord (the seeds of one arm; one legend entry each).
      key: the train metric.
      error: plot 100 − value (top-1 → error %).
      styles: optional label -> matplotlib line style.
    """
    for i, (label, records) in enumerate(groups.items()):
        for j, rec in enumerate(records):
            steps, values = rec.curve(key)
            if not steps:
                continue
            ys = [100.0 - v for v in values] if error else values
            style = (styles or {}).get(label, "-")
            ax.plot(
                steps,
                ys,
                style,
                color=f"C{i}",
                alpha=0.9 if j == 0 else 0.5,
                linewidth=1.4,
                label=label if j == 0 else None,
            )
            if rec.status == "diverged":
                ax.plot(steps[-1:], ys[-1:], "x", color=f"C{i}", markersize=9)
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)


def eval_curves(ax, groups: dict, tag: str = "eval/top1", styles=None) -> None:
    """Test error (100 − `tag`) at each evaluation of the TensorBoard logs, a colour per
    group, markers at the evaluations."""
    for i, (label, records) in enumerate(groups.items()):
        for j, rec in enumerate(records):
            points = rec.evals.get(tag, [])
            if points:
                style = (styles or {}).get(label, "-")
                ax.plot(
                    [s for s, _ in points],
                    [100.0 - v for _, v in points],
                    style + "o",
                    color=f"C{i}",
                    markersize=4,
                    alpha=0.9 if j == 0 else 0.5,
                    label=label if j == 0 else None,
                )
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)


def accuracy_against_cost(ax, groups: dict, values: dict, log: bool = False) -> None:
    """Test top-1 against MACs, a dot per run and a colour per arm.

    Args:
      groups: label -> list of RunRecord.
      values: run name -> measured row with 'MMACs', 'test_top1' and 'params'.
      log: a log MACs axis.
    """
    for i, (label, recs) in enumerate(groups.items()):
        rows = [values[r.run.name] for r in recs]
        ax.plot(
            [row["MMACs"] for row in rows],
            [row["test_top1"] for row in rows],
            "o",
            color=f"C{i}",
            label=f"{label} ({rows[0]['params']:,} params)",
        )
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("MMACs per image" + (" (log)" if log else ""))
    ax.set_ylabel("test top-1 (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def seed_points(ax, arms: dict, ylabel: str, log: bool = False) -> None:
    """Each arm's value per seed as dots and their mean as a bar outline.

    Args:
      arms: label -> list of values (one per seed; NaN for a run without one).
    """
    import math

    for i, values in enumerate(arms.values()):
        finite = [v for v in values if not math.isnan(v)]
        if finite:
            ax.bar(i, sum(finite) / len(finite), color=f"C{i}", alpha=0.35, width=0.6)
            ax.plot([i] * len(finite), finite, "o", color=f"C{i}", markersize=5)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(list(arms), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
