"""Runs findings into a directory and keeps `DIR/findings.json` up to date.

    DIR/runs/<run>/        one trainer workdir per run (shared by findings that need it)
    DIR/<finding>.png      one figure per finding
    DIR/findings.json      {'scale', 'findings': {name: entry}}: claim, source, rule, the
                           measured values per run, the comparisons, the verdict, seeds, the
                           runs with their commands, wall times

Running a finding again resumes it: finished runs are kept (the trainer returns a finished
workdir untouched), interrupted ones continue from their newest checkpoint, and the
measurement, verdict and figure are made again from what the workdirs hold.
"""

import json
import os
import time

from cnnx.errors import ConfigError
from cnnx.findings import registry
from cnnx.findings.registry import Scale
from cnnx.findings.runs import execute, record, write_json
from cnnx.findings.verdict import combine

FINDINGS_JSON = "findings.json"


def load(root: str) -> dict:
    """`DIR/findings.json`, or an empty one."""
    path = os.path.join(root, FINDINGS_JSON)
    if not os.path.exists(path):
        return {"scale": None, "findings": {}}
    with open(path) as f:
        return json.load(f)


def _check_scale(root: str, scale: Scale) -> None:
    held = load(root).get("scale")
    if held not in (None, scale.name):
        raise ConfigError(
            f"{root} holds findings at scale {held!r}; run --scale={scale.name} in another "
            "--workdir (one scale per directory)."
        )


def run_finding(name: str, scale: Scale, root: str, log=print, done: dict | None = None) -> dict:
    """Trains (or resumes) a finding's runs, measures them, decides, draws, and records the
    entry in `DIR/findings.json`.

    Args:
      name: a registered finding.
      scale: the scale and seeds.
      root: the directory (created if needed).
      log: progress printer.
      done: run name -> RunRecord of runs this process already executed (shared runs are
        then not opened again).

    Returns:
      The finding's entry of findings.json.
    """
    finding = registry.get(name)
    _check_scale(root, scale)
    t0 = time.time()
    runs = finding.runs(scale)
    log(f"{name}: {len(runs)} runs at scale {scale.name} -> {root}")
    done = {} if done is None else done
    records = {}
    for i, run in enumerate(runs, 1):
        log(f" [{i}/{len(runs)}] {run.name}")
        if run.name not in done:
            done[run.name] = execute(run, root, log)
        records[run.name] = done[run.name]
    measurement = finding.measure(records, scale)
    figure = f"{name}.png"
    finding.figure(records, measurement, os.path.join(root, figure))
    verdict = combine(c.verdict for c in measurement.comparisons)
    entry = {
        "name": name,
        "title": finding.title,
        "claim": finding.claim,
        "source": finding.source,
        "rule": finding.rule,
        "budget": finding.budget,
        "scale": scale.name,
        "seeds": sorted({run.seed for run in runs}),
        "verdict": verdict,
        "comparisons": [c.to_json() for c in measurement.comparisons],
        "values": measurement.values,
        "notes": measurement.notes,
        "runs": [
            {
                "name": run.name,
                "label": run.label,
                "seed": run.seed,
                "status": records[run.name].status,
                "wall_s": records[run.name].wall_s,
                "command": run.command(root),
            }
            for run in runs
        ],
        "figure": figure,
        # Training time of the runs over all their segments (shared runs count in each
        # finding that uses them), and this invocation's wall time (small when resumed).
        "compute_s": sum(records[run.name].wall_s for run in runs),
        "wall_s": time.time() - t0,
    }
    _store(root, scale, entry)
    log(f"{name}: {verdict}")
    return entry


def _store(root: str, scale: Scale, entry: dict) -> None:
    data = load(root)
    data["scale"] = scale.name
    data["findings"][entry["name"]] = entry
    order = registry.names()
    data["findings"] = dict(
        sorted(
            data["findings"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99
        )
    )
    write_json(os.path.join(root, FINDINGS_JSON), data, sort_keys=False)  # the suite's order


def run_all(names: list[str], scale: Scale, root: str, log=print) -> list[dict]:
    """`run_finding` for each name, sharing runs between findings."""
    done = {}
    return [run_finding(name, scale, root, log, done) for name in names]


def status(name: str, scale: Scale, root: str) -> list[tuple[str, str]]:
    """(run name, status) of a finding's runs as `DIR` holds them now, nothing trained."""
    return [(run.name, record(run, root).status) for run in registry.get(name).runs(scale)]
