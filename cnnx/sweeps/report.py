"""Sweep summaries: the best trial, a results table, and accuracy-against-MACs plots (PNG).

Everything here works on plain trial records (the `trials.jsonl` export), with no Optuna.
Files go through etils.epath (gs:// sweep workdirs).
"""

import io
import math

from etils import epath

from cnnx.sweeps.spec import Sweep

# Axis labels in words, with units, for the metrics trials report.
METRIC_LABELS = {
    "eval/top1": "Top-1 accuracy on the eval split (%)",
    "eval/top5": "Top-5 accuracy on the eval split (%)",
    "eval/loss": "Cross-entropy loss on the eval split (nats)",
    "train/loss": "Training loss, last logged (nats)",
}
GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "phi": "φ"}


# An evaluator's metrics ('<name>/top1', ...) in words, with units.
_EVALUATOR_METRICS = {
    "top1": "Top-1 accuracy on {} (%)",
    "top5": "Top-5 accuracy on {} (%)",
    "loss": "Cross-entropy loss on {} (nats)",
    "nll": "Negative log-likelihood on {} (nats)",
    "ece": "Expected calibration error on {} (%, 15 bins)",
}


def metric_label(metric: str) -> str:
    """`metric` in words with its unit ('eval/top1' -> 'Top-1 accuracy on the eval split (%)',
    'v2/ece' -> 'Expected calibration error on v2 (%, 15 bins)')."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    name, _, what = metric.partition("/")
    return _EVALUATOR_METRICS[what].format(name) if what in _EVALUATOR_METRICS else metric


def point_label(record: dict) -> str:
    """A trial's label for plots: 'α=1.2 β=1.1 γ=1.15', else its swept keys, else its index."""
    values = record.get("tags") or {
        k.split(".")[-1]: v for k, v in (record.get("overrides") or {}).items()
    }
    text = " ".join(f"{GREEK.get(k, k)}={_short(v)}" for k, v in values.items())
    return text or str(record.get("index"))


def _short(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def completed(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "completed"]


def choose_best(records: list[dict], metric: str = "eval/top1", mode: str = "max") -> dict | None:
    """The completed record with the best `metric` (ties: fewer MACs, then lower index)."""
    scored = [r for r in completed(records) if _metric(r, metric) is not None]
    if not scored:
        return None
    sign = -1.0 if mode == "max" else 1.0
    return min(
        scored, key=lambda r: (sign * _metric(r, metric), r.get("macs") or 0, r.get("index", 0))
    )


def _metric(record: dict, metric: str):
    value = record.get("metrics", {}).get(metric)
    return None if value is None or not math.isfinite(value) else float(value)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(records: list[dict], metric: str = "eval/top1", best: dict | None = None) -> str:
    """A markdown table: one row per trial (sorted by index), the best one starred."""
    tag_keys = sorted({k for r in records for k in r.get("tags", {})})
    override_keys = sorted({k for r in records for k in r.get("overrides", {})})
    cols = tag_keys or override_keys
    head = ["#", *(GREEK.get(c, c) for c in cols), "status", metric, "params", "MMACs", "wall s"]
    rows = []
    for r in sorted(records, key=lambda r: r.get("index", 0)):
        values = r.get("tags", {}) if tag_keys else r.get("overrides", {})
        m = _metric(r, metric)
        star = " *" if best is not None and r.get("key") == best.get("key") else ""
        rows.append(
            [
                f"{r.get('index')}{star}",
                *(_cell(values.get(k, "")) for k in cols),
                r.get("status", "?"),
                f"{m:.2f}" if m is not None else "-",
                f"{r['num_params']:,}" if r.get("num_params") else "-",
                f"{r['macs'] / 1e6:.2f}" if r.get("macs") else "-",
                f"{r.get('wall_time_s', 0):.0f}",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(f"{c:>{w}}" for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def plot_accuracy_vs_flops(
    records: list[dict],
    path: str,
    metric: str = "eval/top1",
    best: dict | None = None,
    title: str = "",
    highlight: dict | None = None,
) -> str | None:
    """Scatter of `metric` against MACs (log x) for completed trials; the best one starred.

    Args:
      records: trial records (with 'macs' and 'metrics').
      path: PNG to write.
      metric: y axis.
      best: the chosen record (drawn as a red star).
      title: figure title.
      highlight: {label: record} drawn as open circles (e.g. the paper's point).

    Returns:
      The path, or None when there is nothing to plot.
    """
    points = [r for r in completed(records) if r.get("macs") and _metric(r, metric) is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [r["macs"] / 1e6 for r in points]
    ys = [_metric(r, metric) for r in points]
    ax.scatter(xs, ys, c="tab:blue", s=30, label="trials")
    middle = math.sqrt(min(xs) * max(xs))  # of the log axis: labels point inwards
    for r, x, y in zip(points, xs, ys):
        right = x > middle
        ax.annotate(
            point_label(r),
            (x, y),
            fontsize=7,
            xytext=(-4 if right else 4, 3),
            textcoords="offset points",
            ha="right" if right else "left",
        )
    for label, r in (highlight or {}).items():
        if r is not None and r.get("macs") and _metric(r, metric) is not None:
            ax.scatter(
                [r["macs"] / 1e6],
                [_metric(r, metric)],
                s=160,
                facecolors="none",
                edgecolors="black",
                label=label,
            )
    if best is not None and best.get("macs"):
        ax.scatter(
            [best["macs"] / 1e6],
            [_metric(best, metric)],
            marker="*",
            s=300,
            c="red",
            label=f"chosen ({point_label(best)})",
            zorder=5,
        )
    ax.set_xscale("log")
    ax.set_xlabel("Multiply-accumulates per image at the eval resolution (millions, log scale)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
    epath.Path(path).write_bytes(buf.getvalue())
    return path


def tally(sweep: Sweep, records: list[dict]) -> dict:
    """How much of the sweep was measured: the latest record per trial of the current definition.

    Returns:
      {'latest': records, 'measured': completed records with a finite metric, 'failed': the
      others, 'missing': trials with no record yet, 'total': the sweep's size}.
    """
    from cnnx.sweeps.results import latest_by_key

    keys = {t.key for t in sweep.trials}
    latest = [r for k, r in latest_by_key(records).items() if sweep.is_search or k in keys]
    measured = [r for r in completed(latest) if _metric(r, sweep.metric) is not None]
    measured_keys = {r.get("key") for r in measured}
    failed = [r for r in latest if r.get("key") not in measured_keys]
    missing = max(0, sweep.total - len(latest))
    return dict(latest=latest, measured=measured, failed=failed, missing=missing, total=sweep.total)


def failure_reason(record: dict) -> str:
    """A failed trial's reason in one line: its `error:` line, else the log's last line."""
    lines = [x.strip() for x in str(record.get("error") or "").splitlines() if x.strip()]
    if not lines:
        if record.get("status") == "completed":
            return f"no finite value of the metric (metrics: {sorted(record.get('metrics', {}))})"
        return f"status {record.get('status')}, no message"
    errors = [x for x in lines if x.startswith("error:")]
    return (errors[-1] if errors else lines[-1])[:400]


def summarize(sweep: Sweep, records: list[dict], workdir: str, allow_failed: bool = False) -> str:
    """Writes summary.md, summary.json and accuracy_vs_flops.png; returns the text.

    Only trials of the current sweep definition are summarised (records of trials no longer in
    it are ignored), one record per trial (the latest). A best point is chosen only when every
    trial was measured, or with `allow_failed` (then named as the best of the measured ones):
    a grid with failed points was not searched, and its survivor is not its optimum.
    """
    from cnnx.train.workdir import write_json_atomic, write_text_atomic

    wd = epath.Path(workdir)
    t = tally(sweep, records)
    latest, failed, n = t["latest"], t["failed"], len(t["measured"])
    whole = not failed and not t["missing"]
    best = choose_best(latest, sweep.metric, sweep.mode) if whole or allow_failed else None
    text = [
        f"Sweep {sweep.ref}: {len(completed(latest))}/{sweep.total} trials completed "
        f"({len(latest) - len(completed(latest))} failed"
        + (f", {t['missing']} not run" if t["missing"] else "")
        + f"), metric {sweep.metric} ({sweep.mode}); records in {wd / 'trials.jsonl'}",
        "",
        format_table(latest, sweep.metric, best),
        "",
    ]
    for r in sorted(latest, key=lambda r: r.get("index", 0)):
        for key, (asked, used) in (r.get("snapped") or {}).items():
            text.append(
                f"trial {r['index']} ({point_label(r)}): {key} {asked} -> {used} px, the "
                "nearest size the model accepts"
            )
    for r in sorted(failed, key=lambda r: r.get("index", 0)):
        log = wd / str(r.get("workdir", "")) / "trial.log"
        text.append(f"trial {r['index']} ({point_label(r)}) failed: {failure_reason(r)} [{log}]")
    if best is not None:
        what = "Best" if whole else f"Best of the {n} measured points (the others failed)"
        text.append(
            f"{what}: trial {best['index']} ({point_label(best)}) "
            f"{sweep.metric}={_metric(best, sweep.metric):.2f}"
        )
    elif failed or t["missing"]:
        text.append(
            f"No point chosen: only {n} of {sweep.total} points were measured. Rerun with "
            "--retry_failed after fixing the cause, or pass --allow_failed_trials to choose "
            "among the measured points."
        )
    extra_hook = getattr(sweep.module, "report", None)
    if extra_hook is not None:
        extra = extra_hook(best, latest, sweep.arg)
        if extra:
            text += ["", extra]
    highlight = None
    paper = getattr(sweep.module, "highlight", None)
    if paper is not None:
        highlight = paper(latest, sweep.arg)
    plot = plot_accuracy_vs_flops(
        latest,
        str(wd / "accuracy_vs_flops.png"),
        sweep.metric,
        best,
        title=epath.Path(sweep.ref).name,
        highlight=highlight,
    )
    if plot:
        text.append(f"\nPlot: {plot}")
    body = "\n".join(text)
    write_text_atomic(str(wd / "summary.md"), body + "\n")
    write_json_atomic(
        str(wd / "summary.json"),
        {
            "best": best,
            "measured": n,
            "failed": len(failed),
            "missing": t["missing"],
            "total": sweep.total,
            "records": sorted(latest, key=lambda r: r.get("index", 0)),
        },
    )
    return body
