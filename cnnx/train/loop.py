"""The training loop: `train_and_evaluate(config, workdir)`.

One `jax.jit`-compiled step over a `Mesh` with the batch sharded on ('data', 'fsdp') and the
state replicated or sharded by `config.mesh` (cnnx.train.sharding); the same code runs on
one CPU, eight fake CPU devices, a GPU, or a TPU pod (one process per host, `jax.distributed`
initialised by the entry point).
"""

import contextlib
import functools
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from clu import metric_writers, parameter_overview, periodic_actions
from etils import epath

from cnnx.data import EvalInput, TrainInput, to_global
from cnnx.errors import CheckpointError, CheckpointMismatch, TrainingDiverged, WorkdirError
from cnnx.layers.remat import compiler_options as remat_compiler_options
from cnnx.train import finetune, health, optim, steps
from cnnx.train import workdir as wd
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import Experiment, check_step_counts, process_info, setup
from cnnx.train.mesh import batch_sharding, replicated
from cnnx.train.profiling import Profiler, StepTimer
from cnnx.train.sharding import log_placement, shardings_from_config
from cnnx.train.state import create_train_state, jit_initialize


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


def train_steps(config, steps_per_epoch: int) -> int:
    if config.train.num_steps:
        return int(config.train.num_steps)
    return max(1, round(config.train.num_epochs * steps_per_epoch))


def make_train_input(exp: Experiment) -> TrainInput:
    c = exp.config
    pidx, pcount = process_info()
    return TrainInput(
        source=exp.source,
        split=c.data.train_split,
        pp=c.data.train_pp,
        ctx=exp.pp_context(train=True),
        global_batch=c.train.batch_size,
        seed=c.seed,
        shuffle_buffer=c.data.shuffle_buffer,
        cache=c.data.cache,
        process_index=pidx,
        process_count=pcount,
    )


def make_eval_input(exp: Experiment, split=None, image_size=None, pp=None) -> EvalInput:
    c = exp.config
    pidx, pcount = process_info()
    return EvalInput(
        source=exp.source,
        split=split or c.data.eval_split,
        pp=pp or c.data.eval_pp,
        ctx=exp.pp_context(train=False, image_size=image_size),
        global_batch=c.eval.batch_size,
        process_index=pidx,
        process_count=pcount,
    )


def evaluate_state(
    exp: Experiment, variables, eval_input: EvalInput, eval_fn, stop=None
) -> dict | None:
    """Runs one pass over an eval split; returns eval/loss, eval/top1, eval/top5 (in %).

    `stop`: optional `fn() -> bool` checked between batches; when it says so the pass is
    abandoned and None returned (SIGTERM during the final evaluation).
    """
    sharding = batch_sharding(exp.mesh)
    totals = None
    for batch in eval_input.iterate():
        if stop is not None and stop():
            return None
        sums = eval_fn(variables, to_global(batch, sharding))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    n = float(totals["count"])
    eval_input.check_count(n)
    return {
        "eval/loss": float(totals["loss"]) / n,
        "eval/top1": 100.0 * float(totals["top1"]) / n,
        "eval/top5": 100.0 * float(totals["top5"]) / n,
        "eval/examples": int(n),
    }


def make_eval_fn(exp: Experiment, num_classes: int):
    return jax.jit(
        functools.partial(steps.eval_step, apply_fn=exp.model.apply, num_classes=num_classes),
        out_shardings=replicated(exp.mesh),
    )


def make_tx(config, schedule):
    """The optimizer of a config, with frozen / slowed parameter groups applied."""
    tx = optim.make_optimizer(config.optim, schedule)
    return finetune.partition_optimizer(
        tx, config.train.trainable, config.train.lr_mult_pattern, config.train.lr_mult
    )


def init_state(exp: Experiment, tx, rng):
    """Abstract shapes first (`jax.eval_shape`), then a sharded, jitted initialisation."""
    ema = exp.config.train.ema_decay is not None
    create = functools.partial(
        create_train_state, exp.model, tx, input_shape=exp.input_shape, ema=ema
    )
    abstract = jax.eval_shape(create, rng)
    # Parameters, their optimizer state and EMA copies by `config.mesh` (replicated unless
    # fsdp/model > 1 or rules say otherwise); created in place, never gathered on one device.
    shardings = shardings_from_config(abstract, exp.mesh, exp.config.mesh)
    log_placement(abstract, shardings, exp.mesh)
    return jit_initialize(create, rng, shardings), shardings


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


class MetricsLog:
    """Where a run's metrics go: TensorBoard and `train_metrics.jsonl` (process 0; the others
    only log them), with the run's wall time and last train metrics summed over its segments.

    Resuming at `start_step` drops the jsonl lines after it (a killed segment's, written again)
    and carries on the wall time and train metrics logged at it. A failed write (full disk)
    raises `_WriteFailed`, reported as one error once the pending checkpoint save is done.
    """

    def __init__(self, workdir: str, start_step: int, t_start: float, process_index: int):
        self.path = wd.metrics_path(workdir)
        self.tensorboard = f"the TensorBoard log in {workdir}"
        self._t_start = t_start
        self._jsonl = process_index == 0
        self.wall_before, self.last_train = _progress_before(workdir, start_step)
        if self._jsonl:
            with _writing(self.path):
                wd.keep_metrics_until(self.path, start_step)
        # Synchronous: a failed write raises here, in the loop, not in a background thread.
        self.writer = metric_writers.create_default_writer(
            workdir, just_logging=process_index > 0, asynchronous=False
        )

    def wall_time(self) -> float:
        """Seconds spent on the run so far, over all its segments."""
        return self.wall_before + time.time() - self._t_start

    def write_train(self, step: int, summary: dict) -> None:
        self.last_train = summary
        with _writing(self.tensorboard):
            self.writer.write_scalars(step, summary)
        if self._jsonl:
            record = {"step": step, **summary, "wall_time_s": self.wall_time()}
            with _writing(self.path):
                wd.append_line(self.path, record)

    def write(self, step: int, scalars: dict) -> None:
        """Other scalars (evaluations): TensorBoard and the log only."""
        with _writing(self.tensorboard):
            self.writer.write_scalars(step, scalars)

    def flush(self) -> None:
        with _writing(self.tensorboard):
            self.writer.flush()


def agree_with_process_0():
    """`fn(ok) -> process 0's ok` on every process, or None for a single process."""
    if jax.process_count() == 1:
        return None
    from jax.experimental import multihost_utils

    return lambda ok: bool(multihost_utils.broadcast_one_to_all(np.asarray(ok)))


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


def _train_and_evaluate(config, exp, workdir, t_start, changes, preemption, step_callback):
    """The run itself, with the workdir checked and locked (see `train_and_evaluate`)."""
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    pidx, _ = process_info()

    train_input = make_train_input(exp)
    eval_input = make_eval_input(exp)
    spe = train_input.steps_per_epoch
    total_steps = train_steps(config, spe)
    check_step_counts(config, spe, total_steps)
    finished = wd.finished_results(workdir, total_steps)
    if finished is not None:
        logging.info("%s holds a run completed at step %d; nothing to do.", workdir, total_steps)
        return {**finished, "already_finished": True}
    num_classes = exp.model.num_classes
    peak_lr = optim.scaled_lr(config.optim.base_lr, config.train.batch_size)
    schedule = optim.make_schedule(config.schedule, peak_lr, spe, total_steps)
    tx = make_tx(config, schedule)
    finetune.check_init(config, exp.spec.name)  # every init problem in one error

    rng = jax.random.PRNGKey(config.seed)
    init_rng, step_rng = jax.random.split(rng)
    state, state_shardings = init_state(exp, tx, init_rng)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    if pidx == 0:
        # Parameters split across hosts (FSDP) cannot be fetched by one process: shapes and
        # shardings only, no statistics.
        local = all(x.is_fully_addressable for x in jax.tree.leaves(state.params))
        parameter_overview.log_parameter_overview(
            state.params, include_stats=True if local else "sharding"
        )
    logging.info(
        "model %s: %d parameters; %d steps (%d per epoch), global batch %d on %d devices",
        exp.spec.name,
        n_params,
        total_steps,
        spe,
        config.train.batch_size,
        exp.mesh.size,
    )

    ckpt = Checkpointer(
        wd.checkpoints_dir(workdir),
        max_to_keep=config.ckpt.max_to_keep,
        asynchronous=config.ckpt.asynchronous,
        cleanup=True,  # what a killed save left behind
    )
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
        state = finetune.initialize_from(state, config.init, exp.spec.name, state_shardings)
    if pidx == 0:  # only now: a config that cannot restore the workdir changes nothing
        if changes:
            wd.record_config_change(workdir, changes, start_step)
        with _writing(wd.config_path(workdir)):
            wd.write_text_atomic(
                wd.config_path(workdir), config.to_json_best_effort(indent=2, sort_keys=True)
            )
    log = MetricsLog(workdir, start_step, t_start, pidx)

    step_fn = jax.jit(
        functools.partial(
            steps.train_step,
            num_classes=num_classes,
            schedule=schedule,
            **steps.options_from_config(config.train),
        ),
        in_shardings=(state_shardings, batch_sharding(exp.mesh), replicated(exp.mesh)),
        out_shardings=(state_shardings, replicated(exp.mesh)),
        donate_argnums=(0,),
        # XLA:CPU would undo remat without this (see cnnx.layers.remat.compiler_options).
        compiler_options=remat_compiler_options() if config.model.get("remat") else None,
    )
    eval_fn = make_eval_fn(exp, num_classes)
    step_rng = jax.device_put(step_rng, replicated(exp.mesh))

    report = periodic_actions.ReportProgress(
        num_train_steps=total_steps, writer=log.writer, every_steps=config.train.log_every_steps
    )
    eval_every = config.eval.every_steps or spe
    ckpt_every = config.ckpt.every_steps or spe
    sharding = batch_sharding(exp.mesh)
    pending = []  # device metrics since the last log; fetched only at log time
    eval_metrics: dict = {}
    status = "completed"
    step = start_step
    timer = StepTimer()
    profiler = Profiler(config.train.get("profile_steps"), wd.profile_dir(workdir), step)
    skipped = {"total": 0, "in_a_row": 0}
    run_health = health.RunHealth(num_classes, spe, total_steps, config.optim.base_lr)

    def last_good() -> str:
        newest = ckpt.latest_step()
        if newest is None:
            return f"no checkpoint had been written to {ckpt.directory} yet"
        return (
            f"the last good checkpoint in {ckpt.directory} (step {newest}) is intact (to go "
            "on from it with another config, e.g. learning rate, pass --allow_config_change)"
        )

    def diverged(step, metrics):
        shown = {k: round(float(v), 6) for k, v in metrics.items()}
        return TrainingDiverged(
            f"Loss became {float(metrics['loss'])} at step {step} (metrics of that step: "
            f"{shown}). Training stopped; {last_good()}. Lower the learning rate, check the "
            "data, or set --config.train.on_nonfinite=skip to skip such steps."
        )

    def flush(step):
        """Fetches the metrics of the steps since the last log, checks and writes them."""
        nonlocal pending
        if not pending:
            return
        fetched = jax.device_get(pending)
        pending = []
        first = step - len(fetched) + 1
        good = []
        for i, m in enumerate(fetched):
            if m.get("skipped", 0.0) > 0:
                skipped["total"] += 1
                skipped["in_a_row"] += 1
                if skipped["in_a_row"] >= MAX_CONSECUTIVE_SKIPS:
                    raise TrainingDiverged(
                        f"{skipped['in_a_row']} steps in a row up to step {first + i} had a "
                        f"non-finite loss or gradient (on_nonfinite=skip); stopping; "
                        f"{last_good()}. Lower the learning rate or check the data."
                    )
                continue
            skipped["in_a_row"] = 0
            if not np.isfinite(m["loss"]):
                raise diverged(first + i, m)
            good.append(m)
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
                    skipped["total"],
                )
        summary.update({f"train/{k}": v for k, v in timer.summary().items()})
        log.write_train(step, summary)
        run_health.add_train(step, summary.get("train/loss"))

    def after_eval(state, metrics):
        """Reduce-on-plateau: the decision is part of the (checkpointed) optimizer state."""
        if config.schedule.name != "plateau":
            return state
        opt_state = optim.plateau_update(state.opt_state, metrics["eval/top1"], config.schedule)
        return state.replace(opt_state=opt_state)

    resumed_at_eval = 0 < start_step < total_steps and start_step % eval_every == 0
    if config.schedule.name == "plateau" and resumed_at_eval:
        # Checkpoints at an eval step are written before that eval; redo its lr decision.
        state = after_eval(state, evaluate_state(exp, state.eval_variables(), eval_input, eval_fn))

    batches = train_input.iterate(start_step)
    failed = True
    try:
        with preemption:
            while step < total_steps:
                with timer.waiting_for_data():
                    batch = next(batches)
                batch = to_global(batch, sharding)
                profiler.before_step(step)
                compiling = step == start_step  # the first call traces and compiles
                with timer.excluded() if compiling else contextlib.nullcontext():
                    t_call = time.perf_counter()
                    with profiler.annotation(step):
                        state, metrics = step_fn(state, batch, step_rng)
                    if compiling:
                        logging.info("train step compiled in %.1f s", time.perf_counter() - t_call)
                pending.append(metrics)
                step += 1
                timer.step()
                profiler.after_step(step, metrics)
                with _writing(log.tensorboard):
                    report(step)
                if step_callback is not None:
                    step_callback(step)
                if step % config.train.log_every_steps == 0 or step == total_steps:
                    flush(step)
                stop = preemption.should_stop(step)
                if step % ckpt_every == 0 or step == total_steps or stop:
                    flush(step)  # never checkpoint a diverged state
                    with timer.excluded():
                        if not bool(all_finite(state.params)):
                            raise TrainingDiverged(
                                f"Parameters became non-finite by step {step}; not saving; "
                                f"{last_good()}. Lower the learning rate."
                            )
                        ckpt.save(step, state, wait=stop)
                if stop:
                    status = "preempted"
                    logging.warning("SIGTERM: saved checkpoint at step %d; exiting.", step)
                    break
                if step % eval_every == 0 and step != total_steps:
                    with timer.excluded():
                        eval_metrics = evaluate_state(
                            exp, state.eval_variables(), eval_input, eval_fn
                        )
                        log.write(step, eval_metrics)
                        state = after_eval(state, eval_metrics)
                        run_health.add_eval(step, eval_metrics)
        profiler.stop(state)
        if status == "completed":
            # SIGTERM here abandons the evaluation; the final checkpoint is saved (below) and
            # the restart evaluates it without training again.
            stop = (lambda: preemption.requested) if jax.process_count() == 1 else None
            final = evaluate_state(exp, state.eval_variables(), eval_input, eval_fn, stop)
            if final is not None and state.ema_params is not None:
                ema = evaluate_state(exp, state.eval_variables(ema=True), eval_input, eval_fn, stop)
                if ema is None:
                    final = None
                else:
                    final.update({k.replace("eval/", "eval_ema/"): v for k, v in ema.items()})
            if final is not None:
                eval_metrics = final
                log.write(step, eval_metrics)
                run_health.add_eval(step, eval_metrics)
        log.flush()
        failed = False
    finally:
        profiler.stop()
        try:
            ckpt.close()  # waits for the last asynchronous save: its errors surface here
        except CheckpointError as e:
            if not failed:
                raise
            logging.error("%s", e)  # the error already on its way says more; do not mask it
    if preemption.requested and status == "completed":
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
        "warnings": run_health.warnings,
    }
    if skipped["total"]:
        results["skipped_steps"] = skipped["total"]
    if getattr(exp.source, "corrupt", None):
        results["corrupt_files"] = sorted(exp.source.corrupt)
    if pidx == 0:
        with _writing(wd.results_path(workdir)):
            wd.write_json_atomic(wd.results_path(workdir), results)
    logging.info("results: %s", results)
    return results
