"""The training loop: `train_and_evaluate(config, workdir)`.

One `jax.jit`-compiled step over a `Mesh` with the batch sharded on ('data', 'fsdp') and the
state replicated or sharded by `config.mesh` (cnnx.train.sharding); the same code runs on
one CPU, eight fake CPU devices, a GPU, or a TPU pod (one process per host, `jax.distributed`
initialised by the entry point).
"""

import contextlib
import functools
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from clu import parameter_overview
from etils import epath

from cnnx.data import to_global
from cnnx.errors import CheckpointError, CheckpointMismatch, TrainingDiverged, WorkdirError
from cnnx.evaluate.metrics import top5_note
from cnnx.train import build, finetune, health, optim
from cnnx.train import workdir as wd
from cnnx.train.build import agree_with_process_0
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import check_step_counts, process_info, setup
from cnnx.train.mesh import batch_sharding, replicated
from cnnx.train.profiling import Profiler, StepTimer

# The per-tensor parameter table of a run (shapes, dtypes, statistics), in its workdir.
MODEL_SUMMARY = "model_summary.txt"


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between steps (so a save is never torn).

    Installed for the whole run, from before the first step until the final evaluation, the
    final save and results.json are done; entering it again (nested) keeps the one handler.
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        self._depth = 0

    def __enter__(self):
        self._depth += 1
        if self._depth > 1:
            return self
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: rely on the caller
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0 and self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            # All hosts agree on the step to stop at (jax.distributed's preemption service).
            from jax.experimental import multihost_utils

            return self.requested or multihost_utils.reached_preemption_sync_point(step)
        return self.requested


# With train.on_nonfinite='skip', this many skipped steps in a row stop training anyway (the
# data or the state is broken, not one batch).
MAX_CONSECUTIVE_SKIPS = 100


def _restore_hint(workdir: str, config) -> str:
    """What wrote the checkpoints of a workdir, from its config.json, for restore errors."""
    try:
        old = wd.load_saved_config(workdir)
        wrote = f"model {old['model']['name']!r} on {old['data']['source']!r}"
    except Exception:  # no or unreadable config.json: say nothing about it
        wrote = "another model or config"
    return (
        f" The checkpoints in {workdir} were written by {wrote}; this run asks for model "
        f"{config.model.name!r} on {config.data.source!r}. Nothing was changed. Use another "
        f"--workdir for this config, or start from those weights with "
        f"--config.init.checkpoint={workdir} (and --config.init.reset_head=True for a new "
        "label set)."
    )


@jax.jit
def all_finite(tree) -> jax.Array:
    """Whether every element of `tree` is finite.

    Tested through each leaf's sum (a NaN or an infinity makes it non-finite; a sum that
    overflows float32 is reported too, a state that diverged anyway): one reduction per leaf,
    and a third of the compile time of a per-element test (0.7 vs 2.0 s for a shallow
    EfficientNet on 8 devices).
    """
    sums = [jnp.isfinite(jnp.sum(x, dtype=jnp.float32)) for x in jax.tree.leaves(tree)]
    return functools.reduce(jnp.logical_and, sums, jnp.bool_(True))


class _WriteFailed(Exception):
    """A metrics or results file could not be written (reported once the saves are done)."""

    def __init__(self, path: str, error: BaseException):
        super().__init__(path, error)
        self.path, self.error = path, error


# What a failed metrics write raises: OSError from Python file code, OpError from TensorFlow's
# summary writer ("...; No space left on device").
_METRIC_WRITE_ERRORS = (OSError, tf.errors.OpError)


@contextlib.contextmanager
def _writing(path: str):
    try:
        yield
    except _METRIC_WRITE_ERRORS as e:
        raise _WriteFailed(path, e) from e


def _write_failed(workdir: str, failure: _WriteFailed) -> WorkdirError:
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


def _scalars(values: dict, prefix: str = "") -> str:
    """'loss 0.7431  top1 75.94' from {'train/top1': 75.94, 'train/loss': 0.7431}."""
    short = {k.removeprefix(prefix): v for k, v in values.items()}
    keys = [k for k in _LINE_ORDER if k in short]
    keys += [k for k in short if k not in keys and k not in _TIMING]
    return "  ".join(f"{k} {short[k]:.4g}" for k in keys)


def train_line(step: int, total: int, summary: dict, eta_s: float) -> str:
    """The one log line of a log step: progress, train metrics, speed and time left.

    Args:
      step, total: steps done and the run's length.
      summary: the step's 'train/*' scalars, with `StepTimer`'s step_ms and data_wait_ms
        (compilation, evaluation and checkpoints excluded).
      eta_s: seconds left (`MetricsLog.eta`).
    """
    step_ms = summary.get("train/step_ms", 0.0)
    speed = f"{1000.0 / step_ms:.1f} steps/s" if step_ms > 0 else "? steps/s"
    return (
        f"step {step}/{total} ({100.0 * step / total:.1f}%)  {_scalars(summary, 'train/')}  | "
        f"{speed} ({step_ms:.1f} ms/step, {summary.get('train/data_wait_ms', 0.0):.1f} of them "
        f"waiting for data), ETA {format_duration(eta_s)}"
    )


class MetricsLog:
    """Where a run's metrics go: TensorBoard and `train_metrics.jsonl` (process 0), and one
    log line per log step or evaluation (every process), with the run's wall time and last
    train metrics summed over its segments.

    It holds the device metrics of the steps since the last log (`add`) and fetches them only
    at `flush`, where the non-finite and skip accounting happens. Resuming at `start_step`
    drops the jsonl lines after it (a killed segment's, written again) and carries on the
    wall time and train metrics logged at it. A failed write (full disk) raises `_WriteFailed`,
    reported as one error once the pending checkpoint save is done.

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
        self.tensorboard = f"the TensorBoard log in {workdir}"
        self.start_step, self.total_steps = start_step, total_steps
        self.pending = []  # device metrics since the last log
        self.skipped_total = 0
        self.skipped_in_a_row = 0
        self._last_good = last_good
        self._t_start = t_start
        self._jsonl = process_index == 0
        self._pace = None  # (step, time.perf_counter()) once the first step has compiled
        self.wall_before, self.last_train = _progress_before(workdir, start_step)
        if self._jsonl:
            with _writing(self.path):
                wd.keep_metrics_until(self.path, start_step)
        # Synchronous: a failed write raises here, in the loop, not in a background thread.
        self.writer = wd.metric_writer(workdir, just_logging=process_index > 0)

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

    def flush(self, step: int, timing: StepTimer, run_health) -> None:
        """Fetches the metrics of the steps since the last log, checks and writes them."""
        if not self.pending:
            return
        fetched, self.pending = jax.device_get(self.pending), []
        first = step - len(fetched) + 1
        good = self._check(fetched, first)
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
        summary.update({f"train/{k}": v for k, v in timing.summary().items()})
        self.last_train = summary
        with _writing(self.tensorboard):
            self.writer.write_scalars(step, summary)
        if self._jsonl:
            record = {"step": step, **summary, "wall_time_s": self.wall_time()}
            with _writing(self.path):
                wd.append_line(self.path, record)
        logging.info("%s", train_line(step, self.total_steps, summary, self.eta(step)))
        run_health.add_train(step, summary.get("train/loss"))

    def write(self, step: int, scalars: dict) -> None:
        """Other scalars (evaluations): TensorBoard and one log line."""
        with _writing(self.tensorboard):
            self.writer.write_scalars(step, scalars)
        logging.info("step %d  %s", step, _scalars(scalars))

    def flush_writer(self) -> None:
        with _writing(self.tensorboard):
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
    if process_info()[0] == 0:
        # Parameters split across hosts (FSDP) cannot be fetched by one process.
        local = all(x.is_fully_addressable for x in leaves)
        table = parameter_overview.get_parameter_overview(
            params, include_stats=True if local else "sharding"
        )
        with _writing(path):
            wd.write_text_atomic(path, f"{exp.spec.name}\n{table}\n")
    return (
        f"{exp.spec.name}: {n_params:,} parameters ({n_bytes / 2**20:.1f} MiB) in "
        f"{len(leaves)} tensors (table: {path})"
    )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    step_callback=None,
    allow_config_change: bool = False,
) -> dict:
    """Trains (resuming from the newest checkpoint in `workdir`) and evaluates.

    The workdir belongs to one run: its config.json is checked before anything is touched
    (`workdir.check_same_run`), its lock is held for the whole run, and a run already
    completed there is not trained again.

    Args:
      config: the experiment config (see configs/default.py).
      workdir: checkpoints, TensorBoard logs and results.json go here.
      step_callback: optional `fn(step)` called after each step (tests use it).
      allow_config_change: continue a run whose saved config differs in identity keys,
        recording the change in `<workdir>/config_history.jsonl`.

    Returns:
      The final results (also written to `<workdir>/results.json` by process 0), with
      'status' 'completed' or 'preempted'; a workdir whose run had already completed returns
      its results.json unchanged, with 'already_finished' True.

    Raises:
      WorkdirError: the workdir holds another run, is in use, or a file could not be
        written. Other `CnnxError`s: bad config, data, checkpoint, divergence.
    """
    t_start = time.time()
    pidx, _ = process_info()
    wd.check_folder(workdir)
    changes = wd.check_same_run(workdir, config, allow_change=allow_config_change)
    exp = setup(config)  # a bad config fails before the workdir is created or locked
    try:
        locked = wd.locked(workdir, take=pidx == 0, agree=agree_with_process_0())
        with _Preemption() as preemption, locked:
            return _train_and_evaluate(
                config, exp, workdir, t_start, changes, preemption, step_callback
            )
    except _WriteFailed as e:
        raise _write_failed(workdir, e) from None


def restore_or_initialize(config, exp, workdir: str, ckpt: Checkpointer, state, shardings, changes):
    """The run's state: restored from the newest checkpoint in `workdir` into the layout of
    the freshly initialised `state` (placed by `shardings`), else that state, its weights
    from `config.init` when given.

    Process 0 then records a config change (`changes`) and writes config.json: only once the
    state is there, so a config that cannot restore the workdir changes nothing in it.

    Returns:
      (state, the step it starts at).

    Raises:
      CheckpointMismatch: the checkpoints do not fit this config (with a hint at what wrote
        them). CheckpointError: a damaged checkpoint.
    """
    start_step = 0
    if ckpt.latest_step() is not None:
        try:
            state = ckpt.restore(state)
        except CheckpointError as e:
            ckpt.close()
            if not isinstance(e, CheckpointMismatch):
                raise  # a damaged step is not the config's fault: no config hint
            raise CheckpointMismatch(f"{e}{_restore_hint(workdir, config)}") from None
        start_step = int(jax.device_get(state.step))
        logging.info("Resumed from checkpoint at step %d", start_step)
    elif config.init.checkpoint or config.init.torch_weights:
        state = finetune.initialize_from(state, config.init, exp.spec.name, shardings)
    if process_info()[0] == 0:
        if changes:
            wd.record_config_change(workdir, changes, start_step)
        with _writing(wd.config_path(workdir)):
            wd.write_text_atomic(
                wd.config_path(workdir), config.to_json_best_effort(indent=2, sort_keys=True)
            )
    return state, start_step


class _Run:
    """What the step loop works with: the compiled step and evaluation, their inputs, the
    checkpointer, the metrics log and the run's health record."""

    def __init__(self, exp, workdir, inputs, ckpt, step_fn, step_rng, preemption, log):
        config = self.config = exp.config
        self.exp, self.workdir, self.ckpt, self.log = exp, workdir, ckpt, log
        self.step_fn, self.step_rng, self.preemption = step_fn, step_rng, preemption
        self.train_input, self.eval_input = inputs
        self.eval_fn = build.make_eval_fn(exp, exp.model.num_classes)
        spe = self.train_input.steps_per_epoch
        self.eval_every = config.eval.every_steps or spe
        self.ckpt_every = config.ckpt.every_steps or spe
        self.timer = StepTimer()
        self.profiler = Profiler(
            config.train.get("profile_steps"), wd.profile_dir(workdir), log.start_step
        )
        self.health = health.RunHealth(
            exp.model.num_classes, spe, log.total_steps, config.optim.base_lr
        )

    def last_good(self) -> str:
        newest = self.ckpt.latest_step()
        if newest is None:
            return f"no checkpoint had been written to {self.ckpt.directory} yet"
        return (
            f"the last good checkpoint in {self.ckpt.directory} (step {newest}) is intact (to "
            "go on from it with another config, e.g. learning rate, pass --allow_config_change)"
        )

    def evaluate(self, state, ema: bool = False, stop=None):
        variables = state.eval_variables(ema=ema)
        return build.evaluate_state(self.exp, variables, self.eval_input, self.eval_fn, stop)

    def after_eval(self, state, metrics):
        """Reduce-on-plateau: the decision is part of the (checkpointed) optimizer state."""
        if self.config.schedule.name != "plateau":
            return state
        schedule = self.config.schedule
        return state.replace(
            opt_state=optim.plateau_update(state.opt_state, metrics["eval/top1"], schedule)
        )

    def flush(self, step: int) -> None:
        self.log.flush(step, self.timer, self.health)

    def save(self, step: int, state, wait: bool) -> None:
        self.flush(step)  # never checkpoint a diverged state
        with self.timer.excluded():
            if not bool(all_finite(state.params)):
                raise TrainingDiverged(
                    f"Parameters became non-finite by step {step}; not saving; "
                    f"{self.last_good()}. Lower the learning rate."
                )
            self.ckpt.save(step, state, wait=wait)

    def periodic_eval(self, step: int, state):
        with self.timer.excluded():
            metrics = self.evaluate(state)
            self.log.write(step, metrics)
            self.health.add_eval(step, metrics)
            return self.after_eval(state, metrics), metrics

    def final_eval(self, step: int, state) -> dict | None:
        """Evaluation of the last state (and its EMA); None when SIGTERM abandoned it."""
        # SIGTERM here abandons the evaluation; the final checkpoint is saved (by the caller)
        # and the restart evaluates it without training again.
        stop = (lambda: self.preemption.requested) if jax.process_count() == 1 else None
        final = self.evaluate(state, stop=stop)
        if final is not None and state.ema_params is not None:
            ema = self.evaluate(state, ema=True, stop=stop)
            if ema is None:
                return None
            final.update({k.replace("eval/", "eval_ema/"): v for k, v in ema.items()})
        if final is not None:
            self.log.write(step, final)
            self.health.add_eval(step, final)
        return final


def _step_loop(run: _Run, state, start_step: int, step_callback):
    """Trains from `start_step` to the end or to a SIGTERM: the state, the step reached, the
    last evaluation's metrics and whether it was preempted."""
    log, timer, profiler = run.log, run.timer, run.profiler
    sharding = batch_sharding(run.exp.mesh)
    batches = run.train_input.iterate(start_step)
    step, eval_metrics, total = start_step, {}, log.total_steps
    while step < total:
        with timer.waiting_for_data():
            batch = next(batches)
        batch = to_global(batch, sharding)
        profiler.before_step(step)
        compiling = step == start_step  # the first call traces and compiles
        with timer.excluded() if compiling else contextlib.nullcontext():
            t_call = time.perf_counter()
            with profiler.annotation(step):
                state, metrics = run.step_fn(state, batch, run.step_rng)
            if compiling:
                logging.info("train step compiled in %.1f s", time.perf_counter() - t_call)
        log.add(metrics)
        step += 1
        if compiling:
            log.compiled(step)
        timer.step()
        profiler.after_step(step, metrics)
        if step_callback is not None:
            step_callback(step)
        if step % run.config.train.log_every_steps == 0 or step == total:
            run.flush(step)
        stop = run.preemption.should_stop(step)
        if step % run.ckpt_every == 0 or step == total or stop:
            run.save(step, state, wait=stop)
        if stop:
            logging.warning("SIGTERM: saved checkpoint at step %d; exiting.", step)
            return state, step, eval_metrics, True
        if step % run.eval_every == 0 and step != total:
            state, eval_metrics = run.periodic_eval(step, state)
    return state, step, eval_metrics, False


def _train_and_evaluate(config, exp, workdir, t_start, changes, preemption, step_callback):
    """The run itself, with the workdir checked and locked (see `train_and_evaluate`)."""
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    pidx, _ = process_info()
    inputs = build.make_train_input(exp), build.make_eval_input(exp)
    spe = inputs[0].steps_per_epoch
    total_steps = build.train_steps(config, spe)
    check_step_counts(config, spe, total_steps)
    finished = wd.finished_results(workdir, total_steps)
    if finished is not None:
        logging.info("%s holds a run completed at step %d; nothing to do.", workdir, total_steps)
        return {**finished, "already_finished": True}
    schedule = build.make_schedule(config, spe, total_steps)
    tx = build.make_tx(config, schedule)
    finetune.check_init(config, exp.spec.name)  # every init problem in one error

    init_rng, step_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    state, shardings = build.init_state(exp, tx, init_rng)
    ckpt = Checkpointer(
        wd.checkpoints_dir(workdir),
        max_to_keep=config.ckpt.max_to_keep,
        asynchronous=config.ckpt.asynchronous,
        cleanup=True,  # what a killed save left behind
    )
    state, start_step = restore_or_initialize(config, exp, workdir, ckpt, state, shardings, changes)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    logging.info(
        "model %s; %d steps (%d per epoch), global batch %d on %d devices",
        write_model_summary(workdir, exp, state.params),
        total_steps,
        spe,
        config.train.batch_size,
        exp.mesh.size,
    )
    log = MetricsLog(workdir, start_step, total_steps, t_start, pidx, lambda: run.last_good())
    step_fn = build.make_train_step(exp, schedule, shardings)
    step_rng = jax.device_put(step_rng, replicated(exp.mesh))
    run = _Run(exp, workdir, inputs, ckpt, step_fn, step_rng, preemption, log)
    return _run_and_finish(run, state, start_step, step_callback, n_params)


def _run_and_finish(run: _Run, state, start_step: int, step_callback, n_params: int) -> dict:
    """The step loop, the final evaluation and results.json; the checkpointer is closed."""
    config, exp, log = run.config, run.exp, run.log
    resumed_at_eval = 0 < start_step < log.total_steps and start_step % run.eval_every == 0
    if config.schedule.name == "plateau" and resumed_at_eval:
        # Checkpoints at an eval step are written before that eval; redo its lr decision.
        state = run.after_eval(state, run.evaluate(state))
    failed, step = True, start_step
    try:
        with run.preemption:
            state, step, eval_metrics, preempted = _step_loop(run, state, start_step, step_callback)
        run.profiler.stop(state)
        if not preempted:
            eval_metrics = run.final_eval(step, state) or eval_metrics
        log.flush_writer()
        failed = False
    finally:
        run.profiler.stop()
        try:
            run.ckpt.close()  # waits for the last asynchronous save: its errors surface here
        except CheckpointError as e:
            if not failed:
                raise
            logging.error("%s", e)  # the error already on its way says more; do not mask it
    status = "preempted" if preempted else "completed"
    if run.preemption.requested and status == "completed":
        # SIGTERM during the final evaluation or save: the checkpoint of the last step is
        # complete; the orchestrator asked to stop, so say preempted (the restart evaluates).
        status = "preempted"
        logging.warning("SIGTERM: checkpoint of step %d complete; exiting.", step)
    results = {
        "status": status,
        "step": step,
        "model": exp.spec.name,
        "num_params": n_params,
        "image_size": exp.image_size,
        "wall_time_s": log.wall_time(),  # over all segments
        **log.last_train,
        **eval_metrics,
        "warnings": run.health.warnings,
    }
    if (note := top5_note(exp.model.num_classes)) is not None:
        results["notes"] = [note]
    if log.skipped_total:
        results["skipped_steps"] = log.skipped_total
    if getattr(exp.source, "corrupt", None):
        results["corrupt_files"] = sorted(exp.source.corrupt)
    if process_info()[0] == 0:
        with _writing(wd.results_path(run.workdir)):
            wd.write_json_atomic(wd.results_path(run.workdir), results)
    logging.info("results: %s", results)
    return results
