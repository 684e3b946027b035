"""The results of many runs in one table (`scripts/results.py`): model, parameters, MACs,
resolution, every evaluator's figures and wall time, as Markdown, CSV or JSON, and top-1
against MACs as a plot, so a sweep's or a zoo's runs compare at a glance.

A run is a workdir holding results.json (written by the training loop); a folder given in its
place is searched for them, one or two levels down (a zoo of runs, a sweep's trials/*/).
Paths go through etils.epath, so gs:// workdirs are read like local ones. MACs are counted
from the run's config by tracing its model (no data read, nothing compiled), or taken from a
sweep trial's trial_result.json.
"""

import csv
import io
import json

from etils import epath

from cnnx.errors import CnnxError, WorkdirError
from cnnx.sweeps import report
from cnnx.train import workdir as wd

RESULTS = "results.json"
# The figures an evaluator reports, in column order ('<evaluator>/<figure>').
FIGURES = ("top1", "top5", "nll", "ece")
FORMATS = ("markdown", "csv", "json")


def find_runs(paths) -> list[str]:
    """The workdirs under `paths`: each path itself when it holds results.json, else every
    folder one or two levels below it that does (sorted).

    Raises:
      WorkdirError: a path holds no run at all.
    """
    runs = []
    for path in paths:
        root = epath.Path(path)
        if (root / RESULTS).exists():
            runs.append(str(root))
            continue
        # One or two levels down (a zoo's runs, a sweep's trials/<name>/); gs:// has no '**'.
        hits = [p for depth in ("*", "*/*") for p in root.glob(f"{depth}/{RESULTS}")]
        found = sorted(str(p.parent) for p in hits) if root.is_dir() else []
        if not found:
            raise WorkdirError(f"{path}: no results.json there or below; give finished workdirs.")
        runs += found
    return list(dict.fromkeys(runs))


def _macs(workdir: str, results: dict) -> int | None:
    """MACs per image at the eval resolution: a sweep trial's record, else traced."""
    trial = wd.read_json(str(epath.Path(workdir) / "trial_result.json"))
    if trial and trial.get("macs"):
        return int(trial["macs"])
    try:
        config = wd.load_config(workdir)
        if "num_classes" in results:  # written since the evaluators: no data needed
            from cnnx.analysis.flops import total_macs
            from cnnx.analysis.trace import trace
            from cnnx.train.experiment import build_model

            _, model = build_model(config, results["num_classes"])
            size = results["eval_image_size"]
            return int(total_macs(trace(model, (1, size, size, results["channels"]))))
        from cnnx.sweeps.worker import model_cost  # older runs: through their data

        return model_cost(config)["macs"]
    except CnnxError:
        return None


def read_run(workdir: str, macs: bool = True) -> dict:
    """One row: 'run', 'model', 'params', 'macs', 'resolution' (train/eval px), 'status',
    'step', the evaluators' figures ('eval/top1', 'v2/ece', ...) and 'wall_time_s'."""
    results = wd.read_json(str(epath.Path(workdir) / RESULTS))
    if results is None:
        raise WorkdirError(f"{workdir}: results.json is missing or unreadable.")
    train_res = results.get("image_size")
    eval_res = results.get("eval_image_size", train_res)
    row = {
        "run": workdir.rstrip("/").rsplit("/", 1)[-1],
        "model": results.get("model"),
        "params": results.get("num_params"),
        "macs": _macs(workdir, results) if macs else None,
        "resolution": f"{train_res}/{eval_res}" if eval_res != train_res else train_res,
        "status": results.get("status"),
        "step": results.get("step"),
    }
    for key, value in results.items():
        name, _, figure = key.partition("/")
        if figure in FIGURES and name != "train" and isinstance(value, int | float):
            row[key] = value
    row["wall_time_s"] = results.get("wall_time_s")
    return row


def columns(rows: list[dict]) -> list[str]:
    """The table's columns: the run's, then each evaluator's figures ('eval' first), then time."""
    fixed = ["run", "model", "params", "macs", "resolution", "status", "step"]
    keys = {k for row in rows for k in row if "/" in k}
    names = sorted({k.split("/")[0] for k in keys}, key=lambda n: (n != "eval", n))
    figures = [f"{n}/{f}" for n in names for f in FIGURES if f"{n}/{f}" in keys]
    return [*fixed, *figures, "wall_time_s"]


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    if isinstance(v, int) and v >= 10_000:
        return f"{v:,}"
    return str(v)


def format_rows(rows: list[dict], fmt: str = "markdown") -> str:
    """The table as 'markdown', 'csv' or 'json' (a list of rows, values unformatted)."""
    cols = columns(rows)
    if fmt == "json":
        return json.dumps([{c: r.get(c) for c in cols} for r in rows], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: r.get(c) for c in cols} for r in rows)
        return out.getvalue()
    if fmt != "markdown":
        raise ValueError(f"format {fmt!r}: use one of {FORMATS}")
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_top1_vs_macs(rows: list[dict], path: str, metric: str = "eval/top1") -> str | None:
    """`metric` against MACs (log x), one labelled point per run (`report`'s plot); None when
    no run has both."""
    records = [
        {"status": "completed", "macs": r["macs"], "metrics": r, "tags": {"run": r["run"]}}
        for r in rows
        if r.get("macs") and r.get(metric) is not None
    ]
    return report.plot_accuracy_vs_flops(records, path, metric, title=f"{metric} against MACs")
