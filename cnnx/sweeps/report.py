"""Sweep summaries: the best trial, a results table, and accuracy-against-FLOPs plots (PNG)."""

import math
import os

from cnnx.sweeps.spec import Sweep

FLOAT_METRICS = ("eval/top1", "eval/top5", "eval/loss", "train/loss")


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
    head = ["#", *cols, "status", metric, "params", "MMACs", "wall s"]
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
    for r, x, y in zip(points, xs, ys):
        tags = r.get("tags") or {}
        text = "/".join(f"{tags[k]:g}" for k in ("alpha", "beta", "gamma") if k in tags)
        ax.annotate(text or str(r.get("index")), (x, y), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    for label, r in (highlight or {}).items():
        if r is not None and r.get("macs") and _metric(r, metric) is not None:
            ax.scatter([r["macs"] / 1e6], [_metric(r, metric)], s=160, facecolors="none",
                       edgecolors="black", label=label)  # fmt: skip
    if best is not None and best.get("macs"):
        ax.scatter([best["macs"] / 1e6], [_metric(best, metric)], marker="*", s=300, c="red",
                   label="chosen", zorder=5)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("MMACs per image (eval resolution)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarize(sweep: Sweep, records: list[dict], workdir: str) -> str:
    """Writes summary.md, summary.json and accuracy_vs_flops.png; returns the text.

    Only trials of the current sweep definition are summarised (records of trials no longer in
    it are ignored), one record per trial (the latest).
    """
    from cnnx.sweeps.results import latest_by_key, write_json_atomic

    keys = {t.key for t in sweep.trials}
    latest = [r for k, r in latest_by_key(records).items() if k in keys]
    best = choose_best(latest, sweep.metric, sweep.mode)
    n_done = len(completed(latest))
    text = [
        f"Sweep {sweep.ref}: {n_done}/{len(sweep.trials)} trials completed "
        f"({len(latest) - n_done} failed), metric {sweep.metric} ({sweep.mode})",
        "",
        format_table(latest, sweep.metric, best),
        "",
    ]
    if best is not None:
        text.append(
            f"Best: trial {best['index']} ({best.get('tags') or best['overrides']}) "
            f"{sweep.metric}={_metric(best, sweep.metric):.2f}"
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
        os.path.join(workdir, "accuracy_vs_flops.png"),
        sweep.metric,
        best,
        title=os.path.basename(sweep.ref),
        highlight=highlight,
    )
    if plot:
        text.append(f"\nPlot: {plot}")
    body = "\n".join(text)
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write(body + "\n")
    write_json_atomic(
        os.path.join(workdir, "summary.json"),
        {"best": best, "records": sorted(latest, key=lambda r: r.get("index", 0))},
    )
    return body
