"""A run's metrics: TensorBoard, `train_metrics.jsonl` and `eval_metrics.jsonl` (process 0),
one log line per log step or evaluation, the non-finite and skip accounting, the ETA, and the
per-tensor parameter table (`model_summary.txt`). Failed writes (a full disk) become one
`WorkdirError`.
"""

import contextlib
import os
import tempfile
import time

import jax
import numpy as np
from absl import logging
from clu import parameter_overview
from etils import epath

from cnnx.errors import TrainingDiverged, WorkdirError
from cnnx.train import event_files
from cnnx.train import workdir as wd
from cnnx.train.profiling import StepTimer

# The per-tensor parameter table of a run (shapes, dtypes, statistics), in its workdir.
MODEL_SUMMARY = "model_summary.txt"

# With train.on_nonfinite='skip', this many skipped steps in a row stop training anyway (the
# data or the state is broken, not one batch).
MAX_CONSECUTIVE_SKIPS = 100


# --- TensorBoard ----------------------------------------------------------------------------


def metric_writer(logdir: str, *, just_logging: bool = False):
    """The TensorBoard writer of `logdir` (`cnnx.train.event_files`, no TensorFlow needed).

    It writes synchronously, so that a failed write raises in the caller, not in a background
    thread. For a gs:// `logdir` the events are written into a local temporary folder and
    copied into `logdir` at each `flush()` and `close()` and at least every two minutes
    (`MirroredWriter`): an object cannot be appended to, and the copy goes through the path
    layer like every other file of the workdir.

    Args:
      logdir: where the event files go (local or gs://).
      just_logging: write nothing (processes other than 0; the trainer logs its own lines).

    Returns:
      An object with `write_scalars(step, {tag: value})`, `write_hparams({name: value})`,
      `flush()` and `close()`.
    """
    if just_logging:
        return event_files.NoWriter()
    if not wd.is_remote(logdir):
        return event_files.EventWriter(logdir)
    return event_files.MirroredWriter(tempfile.mkdtemp(prefix="cnnx_events_"), logdir)


class WriteFailed(Exception):
    """A metrics or results file could not be written (reported once the saves are done)."""

    def __init__(self, path: str, error: BaseException):
        super().__init__(path, error)
        self.path, self.error = path, error


@contextlib.contextmanager
def writing(path: str):
    """Turns a failed write (OSError: the metrics files and event files are Python files) into
    `WriteFailed` naming `path`."""
    try:
        yield
    except OSError as e:
        raise WriteFailed(path, e) from e


def write_failed_error(workdir: str, failure: WriteFailed) -> WorkdirError:
    """The one-line error of a failed write, as `Checkpointer` reports a failed save."""
    reason, full = wd.describe_write_error(failure.error)
    checkpoints = epath.Path(wd.checkpoints_dir(workdir))
    names = [p.name for p in checkpoints.iterdir()] if checkpoints.is_dir() else []
    done = [int(name) for name in names if name.isdigit()]
    kept = f"step {max(done)}" if done else "none yet"
    hint = "free disk space (or raise the quota)" if full else "fix the cause"
    return WorkdirError(
        f"Writing {failure.path} failed: {reason}. Checkpoints are intact (newest complete: "
        f"{kept}); {hint} and start the same command again to resume from it, or pass "
        "another --workdir."
    )


def _progress_before(workdir: str, step: int) -> tuple[float, dict]:
    """(wall time in s, last train/* metrics) of the earlier segments of a run up to `step`,
    from the last train_metrics.jsonl line at or before it."""
    earlier = [r for r in wd.read_lines(wd.metrics_path(workdir)) if r.get("step", 0) <= step]
    if not step or not earlier:
        return 0.0, {}
    last = earlier[-1]
    train = {k: v for k, v in last.items() if k.startswith("train/")}
    return float(last.get("wall_time_s", 0.0)), train


def format_duration(seconds: float) -> str:
    """A duration as a progress line shows it: '45s', '3m05s', '2h07m', '1d04h'.

    Seconds under a minute, minutes and seconds under an hour, then hours and minutes, then
    days and hours; '?' when unknown (NaN, infinite); negative values count as 0.
    """
    if not np.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# The order of a log line's metrics (others follow in their own order).
_LINE_ORDER = ("loss", "top1", "top5", "lr", "grad_norm", "skipped")
_TIMING = ("step_ms", "data_wait_ms", "compute_ms")
# `cnnx.train.throughput`'s figures: shown in the line's speed part.
_SPEED = ("images_per_s_per_chip", "tflops_per_chip", "mfu", "host_share")


def _scalars(values: dict, prefix: str = "") -> str:
    """'loss 0.7431  top1 75.94' from {'train/top1': 75.94, 'train/loss': 0.7431}."""
    short = {k.removeprefix(prefix): v for k, v in values.items()}
    keys = [k for k in _LINE_ORDER if k in short]
    keys += [
        k
        for k in short
        if k not in keys + list(_TIMING + _SPEED) and not k.startswith("host_share/")
    ]
    return "  ".join(f"{k} {short[k]:.4g}" for k in keys)


def train_line(step: int, total: int, summary: dict, eta_s: float) -> str:
    """The one log line of a log step: progress, train metrics, speed and time left.

    Args:
      step, total: steps done and the run's length.
      summary: the step's 'train/*' scalars, with `StepTimer`'s step_ms and data_wait_ms
        (compilation, evaluation and checkpoints excluded) and, when measured,
        `throughput.Throughput`'s images_per_s_per_chip, tflops_per_chip, mfu, host_share
        and its parts ('host_share/<cause>').
      eta_s: seconds left (`MetricsLog.eta`).
    """
    step_ms = summary.get("train/step_ms", 0.0)
    speed = f"{1000.0 / step_ms:.1f} steps/s" if step_ms > 0 else "? steps/s"
    chip = ""
    if "train/images_per_s_per_chip" in summary:
        chip = f", {summary['train/images_per_s_per_chip']:,.0f} img/s/chip"
        if "train/tflops_per_chip" in summary:
            chip += f", {summary['train/tflops_per_chip']:.3g} TFLOP/s/chip"
        if "train/mfu" in summary:
            chip += f", MFU {100.0 * summary['train/mfu']:.1f}%"
        chip += f", host share {100.0 * summary.get('train/host_share', 0.0):.0f}%"
        parts = [(k.split("/")[-1], v) for k, v in summary.items() if "/host_share/" in k]
        if parts:  # its causes, in points: (input 3, metrics 0, logging 1, checkpoint 0, other 0)
            chip += f" ({', '.join(f'{k} {100.0 * v:.0f}' for k, v in parts)})"
    return (
        f"step {step}/{total} ({100.0 * step / total:.1f}%)  {_scalars(summary, 'train/')}  | "
        f"{speed} ({step_ms:.1f} ms/step, {summary.get('train/data_wait_ms', 0.0):.1f} of them "
        f"waiting for data){chip}, ETA {format_duration(eta_s)}"
    )


class MetricsLog:
    """Where a run's metrics go: TensorBoard and `train_metrics.jsonl` (process 0), and one
    log line per log step or evaluation (every process), with the run's wall time and last
    train metrics summed over its segments.

    It holds the device metrics of the steps since the last log (`add`) and fetches them only
    at `check` (before a checkpoint) and `flush` (a log step), where the non-finite and skip
    accounting happens; a log line averages every step since the previous line. Resuming at
    `start_step` drops the jsonl lines after it (a killed segment's, written again) and
    carries on the wall time and train metrics logged at it. A failed write (full disk) raises
    `WriteFailed`, reported as one error once the pending checkpoint save is done.

    Args:
      workdir: the run's directory.
      start_step: the step the run starts or resumes at.
      total_steps: the run's length (for progress and ETA).
      t_start: `time.time()` when this segment started.
      process_index: this process (0 writes files).
      last_good: `fn() -> str` saying which checkpoint is intact, for divergence errors.
    """

    def __init__(self, workdir, start_step, total_steps, t_start, process_index, last_good):
        self.path = wd.metrics_path(workdir)
        self.eval_path = wd.eval_metrics_path(workdir)
        self.tensorboard = f"the TensorBoard log in {workdir}"
        self.start_step, self.total_steps = start_step, total_steps
        self.pending = []  # device metrics not fetched yet
        self._window, self._good = [], []  # fetched since the last log line: all, not skipped
        self.skipped_total = 0
        self.skipped_in_a_row = 0
        self._last_good = last_good
        self._t_start = t_start
        self._jsonl = process_index == 0
        self._pace = None  # (step, time.perf_counter()) once the first step has compiled
        self.wall_before, self.last_train = _progress_before(workdir, start_step)
        if self._jsonl:
            for path in (self.path, self.eval_path):
                with writing(path):
                    wd.keep_metrics_until(path, start_step)
        # Synchronous: a failed write raises here, in the loop, not in a background thread.
        with writing(f"the TensorBoard event file in {workdir}"):  # a full disk: one line
            self.writer = metric_writer(workdir, just_logging=process_index > 0)

    def wall_time(self) -> float:
        """Seconds spent on the run so far, over all its segments."""
        return self.wall_before + time.time() - self._t_start

    def compiled(self, step: int) -> None:
        """The step `step` ran after compiling: the ETA's pace is measured from here."""
        self._pace = (step, time.perf_counter())

    def eta(self, step: int) -> float:
        """Seconds to `total_steps` at the pace since the first step compiled (evaluations
        and checkpoints included, as they recur; compilation not)."""
        if self._pace is None or step <= self._pace[0]:
            return float("nan")
        done, t0 = self._pace
        return (self.total_steps - step) * (time.perf_counter() - t0) / (step - done)

    def add(self, metrics: dict) -> None:
        self.pending.append(metrics)

    def _check(self, fetched: list, first: int) -> list:
        """The fetched metrics of steps that were not skipped; raises on divergence."""
        good = []
        for i, m in enumerate(fetched):
            if m.get("skipped", 0.0) > 0:
                self.skipped_total += 1
                self.skipped_in_a_row += 1
                if self.skipped_in_a_row >= MAX_CONSECUTIVE_SKIPS:
                    raise TrainingDiverged(
                        f"{self.skipped_in_a_row} steps in a row up to step {first + i} had a "
                        f"non-finite loss or gradient (on_nonfinite=skip); stopping; "
                        f"{self._last_good()}. Lower the learning rate or check the data."
                    )
                continue
            self.skipped_in_a_row = 0
            if not np.isfinite(m["loss"]):
                shown = {k: round(float(v), 6) for k, v in m.items()}
                raise TrainingDiverged(
                    f"Loss became {float(m['loss'])} at step {first + i} (metrics of that "
                    f"step: {shown}). Training stopped; {self._last_good()}. Lower the "
                    "learning rate, check the data, or set --config.train.on_nonfinite=skip "
                    "to skip such steps."
                )
            good.append(m)
        return good

    def check(self, step: int) -> None:
        """Fetches and checks the metrics of the steps up to `step` (divergence, skips) while
        keeping them in the log window: a checkpoint is never written of a diverged state, and
        the next log line still averages every step since the last one."""
        if not self.pending:
            return
        fetched, self.pending = jax.device_get(self.pending), []
        self._good += self._check(fetched, step - len(fetched) + 1)
        self._window += fetched

    def flush(self, step: int, timing: StepTimer, run_health, speed=None) -> None:
        """Fetches the metrics of the steps since the last log, checks and writes them.

        Args:
          step: the step reached.
          timing: the loop's `StepTimer` (its interval ends here).
          run_health: `health.RunHealth`, told the logged loss.
          speed: `throughput.Throughput`, or None: adds images/s per chip, TFLOP/s, MFU and
            host share to the line and the files.
        """
        self.check(step)
        fetched, good, self._window, self._good = self._window, self._good, [], []
        if not fetched:
            return
        first = step - len(fetched) + 1
        summary = {f"train/{k}": float(np.mean([m[k] for m in good])) for k in fetched[0] if good}
        if "skipped" in fetched[0]:
            summary["train/skipped"] = float(len(fetched) - len(good))
            if len(good) < len(fetched):
                logging.warning(
                    "Skipped %d step(s) with a non-finite loss or gradient in steps %d-%d "
                    "(their updates were discarded; %d skipped so far).",
                    len(fetched) - len(good),
                    first,
                    step,
                    self.skipped_total,
                )
        timed = timing.summary()
        summary.update({f"train/{k}": v for k, v in timed.items()})
        if speed is not None:
            figures = speed.interval(len(fetched), timed["step_ms"])
            summary.update({f"train/{k}": v for k, v in figures.items()})
        self.last_train = summary
        with writing(self.tensorboard):
            self.writer.write_scalars(step, summary)
        if self._jsonl:
            record = {"step": step, **summary, "wall_time_s": self.wall_time()}
            with writing(self.path):
                wd.append_line(self.path, record)
        logging.info("%s", train_line(step, self.total_steps, summary, self.eta(step)))
        run_health.add_train(step, summary.get("train/loss"))

    def write(self, step: int, scalars: dict) -> None:
        """Other scalars (evaluations): TensorBoard, a line of `eval_metrics.jsonl` and one
        log line."""
        with writing(self.tensorboard):
            self.writer.write_scalars(step, scalars)
        if self._jsonl:
            with writing(self.eval_path):
                wd.append_line(self.eval_path, {"step": step, **scalars})
        logging.info("step %d  %s", step, _scalars(scalars))

    def flush_writer(self) -> None:
        with writing(self.tensorboard):
            self.writer.flush()


def write_model_summary(workdir: str, exp, params) -> str:
    """Writes the per-tensor parameter table (shapes, dtypes, mean and std; shardings instead
    of statistics where the parameters span hosts) to `<workdir>/model_summary.txt` (process
    0, atomically) and returns its one-line summary for the log: 'lenet5: 60,850 parameters
    (0.2 MiB) in 14 tensors (table: <path>)'."""
    leaves = jax.tree.leaves(params)
    n_params = sum(int(np.prod(x.shape)) for x in leaves)
    n_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves)
    path = os.fspath(epath.Path(workdir) / MODEL_SUMMARY)
    if jax.process_index() == 0:
        # Parameters split across hosts (FSDP) cannot be fetched by one process.
        local = all(x.is_fully_addressable for x in leaves)
        table = parameter_overview.get_parameter_overview(
            params, include_stats=True if local else "sharding"
        )
        with writing(path):
            wd.write_text_atomic(path, f"{exp.spec.name}\n{table}\n")
    return (
        f"{exp.spec.name}: {n_params:,} parameters ({n_bytes / 2**20:.1f} MiB) in "
        f"{len(leaves)} tensors (table: {path})"
    )
