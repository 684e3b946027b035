"""The runs a finding trains, each in its own workdir under `DIR/runs/`, and what they left.

A `Run` names a config file of configs/ with its arg (`configs/findings.py:init,init=he`) and
a few overrides (the seed): exactly what `train.py --config=... --config.seed=1` would train,
so every run of a report can be repeated by hand (`Run.command`). `execute` trains it through
the trainer's own entry point, `cnnx.train.loop.train_and_evaluate`, which resumes an
interrupted workdir from its newest checkpoint and returns a finished one untouched: an
interrupted suite resumes where it stopped. A run that diverges leaves `diverged.json` (the
trainer's message) and is not tried again with the same config. Kind 'fixres' runs the FixRes
protocol (`cnnx.sweeps.fixres.run_fixres`) on a FixRes config file instead.

`RunRecord` reads what a workdir holds: results.json (or fixres.json), the train curve of
train_metrics.jsonl and the evaluation curves of the TensorBoard event files.
"""

import dataclasses
import json
import os
import time
from typing import Any

import ml_collections

from cnnx.sweeps.spec import load_config

RUNS = "runs"
DIVERGED = "diverged.json"
FIXRES_DONE = "fixres_done.json"


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a finding.

    Attributes:
      name: its folder under `DIR/runs/`; findings that need the same run share it.
      config: `path[:arg]` of a config file (relative to the repository root); it and the
        string values of `overrides` may hold `{runs}`, replaced by `DIR/runs` (to name a
        source run's workdir).
      overrides: (dotted key, value) pairs applied after `get_config`.
      kind: 'train' (the trainer) or 'fixres' (the FixRes protocol on a FixRes config).
      label: how figures and tables name it (the arm: runs of one label differ in seed).
      seed: the seed it was given (also among the overrides).
      tags: (key, value) pairs the finding reads back when measuring (the model, lr, ...).
    """

    name: str
    config: str
    overrides: tuple[tuple[str, Any], ...] = ()
    kind: str = "train"
    label: str = ""
    seed: int = 0
    tags: tuple[tuple[str, Any], ...] = ()

    def tag(self, key: str, default=None):
        return dict(self.tags).get(key, default)

    def resolved_config(self, root: str) -> str:
        return self.config.replace("{runs}", os.path.join(root, RUNS))

    def resolved_overrides(self, root: str) -> dict:
        runs = os.path.join(root, RUNS)
        return {
            k: v.replace("{runs}", runs) if isinstance(v, str) else v for k, v in self.overrides
        }

    def command(self, root: str) -> str:
        """The command that trains this run by hand."""
        script = "scripts/fixres.py" if self.kind == "fixres" else "train.py"
        flags = [f"--config={self.resolved_config(root)}"]
        flags += [f"--config.{k}={v!r}" for k, v in self.resolved_overrides(root).items()]
        flags.append(f"--workdir={self.workdir(root)}")
        return " ".join(["python", script, *flags])

    def workdir(self, root: str) -> str:
        return os.path.join(root, RUNS, self.name)


def seeded(name: str, config: str, label: str, seeds, overrides=(), tags=()) -> list[Run]:
    """One `Run` per seed of an arm: named `<name>_s<seed>`, with the seed as the first
    override."""
    return [
        Run(
            name=f"{name}_s{seed}",
            config=config,
            overrides=(("seed", seed), *overrides),
            label=label,
            seed=seed,
            tags=tuple(tags),
        )
        for seed in seeds
    ]


def build_config(run: Run, root: str) -> ml_collections.ConfigDict:
    """The run's config: `get_config(arg)` of its file, the overrides applied (new keys too,
    e.g. `model.depth`, which a model option takes), then locked as train.py locks it."""
    config = load_config(run.resolved_config(root))
    for dotted, value in run.resolved_overrides(root).items():
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    config.lock()
    return config


@dataclasses.dataclass
class RunRecord:
    """What a run's workdir holds.

    Attributes:
      run: the run.
      workdir: its folder.
      status: 'completed', 'diverged' or 'missing'.
      results: results.json (kind 'fixres': fixres.json); {} when missing.
      train: train_metrics.jsonl's records ({'step', 'train/top1', 'train/loss', ...}).
      evals: TensorBoard scalar tag -> [(step, value)] of the evaluations ('eval/top1', ...).
      wall_s: seconds the run took over all its segments.
      message: the trainer's message for a diverged run.
    """

    run: Run
    workdir: str
    status: str
    results: dict
    train: list
    evals: dict
    wall_s: float
    message: str = ""

    def curve(self, key: str = "train/top1") -> tuple[list[int], list[float]]:
        """(steps, values) of a train_metrics.jsonl key."""
        points = [(r["step"], r[key]) for r in self.train if key in r]
        return [s for s, _ in points], [v for _, v in points]

    def config(self) -> ml_collections.ConfigDict:
        """The run's config, as it was trained."""
        return build_config(self.run, os.path.dirname(os.path.dirname(self.workdir)))

    def final(self, key: str) -> float:
        """`key` of results.json, else the last logged value of a train key; NaN if absent."""
        if key in self.results:
            return float(self.results[key])
        _, values = self.curve(key)
        return float(values[-1]) if values else float("nan")


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _read_jsonl(path: str) -> list:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_evals(workdir: str) -> dict:
    """TensorBoard scalars of the workdir's event files whose tag starts 'eval', as
    {tag: [(step, value)]} (read with tensorboard's EventAccumulator)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    if not os.path.isdir(workdir):
        return {}
    acc = EventAccumulator(workdir, size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("tensors", []):
        if tag.startswith("eval"):
            out[tag] = [
                (e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)
            ]
    for tag in acc.Tags().get("scalars", []):
        if tag.startswith("eval"):
            out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    return {tag: sorted(points) for tag, points in out.items()}


def record(run: Run, root: str) -> RunRecord:
    """What `run`'s workdir under `root` holds now."""
    workdir = run.workdir(root)
    diverged = _read_json(os.path.join(workdir, DIVERGED))
    if run.kind == "fixres":
        done = _read_json(os.path.join(workdir, FIXRES_DONE))
        results = _read_json(os.path.join(workdir, "fixres.json")) if done else {}
        status = "completed" if done else "missing"
        return RunRecord(run, workdir, status, results, [], {}, float(done.get("wall_s", 0.0)))
    results = _read_json(os.path.join(workdir, "results.json"))
    train = _read_jsonl(os.path.join(workdir, "train_metrics.jsonl"))
    if diverged:
        wall = float(train[-1]["wall_time_s"]) if train else 0.0
        evals = read_evals(workdir)
        return RunRecord(run, workdir, "diverged", {}, train, evals, wall, diverged["message"])
    status = "completed" if results.get("status") == "completed" else "missing"
    wall = float(results.get("wall_time_s", 0.0))
    return RunRecord(run, workdir, status, results, train, read_evals(workdir), wall)


def _same_config(path: str, config) -> bool:
    saved = _read_json(path).get("config")
    return saved == json.loads(config.to_json_best_effort())


def execute(run: Run, root: str, log=print) -> RunRecord:
    """Trains `run` under `root` unless its workdir already holds it; returns its record.

    Raises:
      CnnxError: from the trainer (a bad config, missing data, a workdir holding another run);
        a diverging run is recorded instead (`diverged.json`).
    """
    from cnnx.errors import TrainingDiverged

    workdir = run.workdir(root)
    config = build_config(run, root)
    marker = os.path.join(workdir, DIVERGED if run.kind == "train" else FIXRES_DONE)
    if os.path.exists(marker) and _same_config(marker, config):
        log(f"  {run.name}: already done ({'diverged' if run.kind == 'train' else 'completed'})")
        return record(run, root)
    t0 = time.time()
    if run.kind == "fixres":
        from cnnx.sweeps.fixres import run_fixres

        log(f"  {run.name}: FixRes protocol -> {workdir}")
        run_fixres(config, workdir, log=lambda line: log(f"    {line}"))
        write_json(
            marker, {"config": json.loads(config.to_json_best_effort()), "wall_s": time.time() - t0}
        )
        return record(run, root)
    from cnnx.train.loop import train_and_evaluate

    try:
        results = train_and_evaluate(config, workdir)
    except TrainingDiverged as e:
        log(f"  {run.name}: diverged: {str(e).split('.')[0]}")
        config_json = json.loads(config.to_json_best_effort())
        write_json(marker, {"message": str(e), "config": config_json})
        return record(run, root)
    if results.get("status") != "completed":
        raise RuntimeError(f"{run.name} stopped ({results.get('status')}); run again to resume")
    done = (
        "already done"
        if results.get("already_finished")
        else f"trained in {time.time() - t0:.0f} s"
    )
    log(f"  {run.name}: {done}")
    return record(run, root)


def write_json(path: str, value: dict, sort_keys: bool = True) -> None:
    """Writes `value` to `path` atomically (a temporary file, then a rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=sort_keys)
    os.replace(tmp, path)
