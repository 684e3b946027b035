"""The training loop: `train_and_evaluate(config, workdir)`.

One `jax.jit`-compiled step over a `Mesh` with the batch sharded on ('data', 'fsdp') and the
state replicated or sharded by `config.mesh` (cnnx.parallel.sharding); the same code runs on
one CPU, eight fake CPU devices, a GPU, or a TPU pod (one process per host, `jax.distributed`
initialised by the entry point).
"""

import contextlib
import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from cnnx import backends
from cnnx.errors import CheckpointError, CheckpointMismatch, TrainingDiverged
from cnnx.evaluate.metrics import top5_note
from cnnx.parallel.mesh import batch_sharding, replicated
from cnnx.train import build, feeding, finetune, health, lock, optim
from cnnx.train import workdir as wd
from cnnx.train.build import agree_with_process_0
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import check_step_counts, process_info, resolve_dtype, setup
from cnnx.train.metrics_log import (
    MetricsLog,
    WriteFailed,
    write_failed_error,
    write_model_summary,
    writing,
)
from cnnx.train.preemption import Preemption
from cnnx.train.profiling import Profiler, StepTimer
from cnnx.train.throughput import Throughput


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
    config, requested_dtype = resolve_dtype(config, wd.load_saved_config(workdir))
    changes = wd.check_same_run(workdir, config, allow_change=allow_config_change)
    exp = setup(config)  # a bad config fails before the workdir is created or locked
    logging.info(
        "compute dtype %s (model.dtype=%s on %s); parameters, BatchNorm statistics, loss, EMA "
        "and optimizer state float32",
        config.model.dtype,
        requested_dtype,
        jax.devices()[0].device_kind,
    )
    exp.dtype_requested = requested_dtype
    try:
        locked = lock.locked(workdir, take=pidx == 0, agree=agree_with_process_0())
        with Preemption(wd.checkpoints_dir(workdir)) as preemption, locked:
            return _train_and_evaluate(
                config, exp, workdir, t_start, changes, preemption, step_callback
            )
    except WriteFailed as e:
        raise write_failed_error(workdir, e) from None


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
        with writing(wd.config_path(workdir)):
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
        self.train_input, self.evaluators = inputs  # evaluators: 'eval' first
        spe = self.train_input.steps_per_epoch
        # Each evaluator at its own cadence, a function of the step alone (exact on resume).
        self.cadence = {ev.name: ev.entry.every(spe) for ev in self.evaluators}
        self.eval_every = self.cadence["eval"]
        self.arrays = {}  # the final evaluation's per-class arrays ('<name>/per_class_top1')
        self.ckpt_every = config.ckpt.every_steps or spe
        self.timer = StepTimer()
        devices = exp.mesh.devices.flat
        self.speed = Throughput(config.train.batch_size, devices, config.model.dtype)
        self.profiler = Profiler(
            config.train.get("profile_steps"), wd.profile_dir(workdir), log.start_step
        )
        self.health = health.RunHealth(
            exp.model.num_classes, spe, log.total_steps, config.optim.base_lr, config.data.source
        )

    def last_good(self) -> str:
        newest = self.ckpt.latest_step()
        if newest is None:
            return f"no checkpoint had been written to {self.ckpt.directory} yet"
        return (
            f"the last good checkpoint in {self.ckpt.directory} (step {newest}) is intact (to "
            "go on from it with another config, e.g. learning rate, pass --allow_config_change)"
        )

    def evaluate(self, state, ema: bool = False, stop=None, step: int | None = None):
        """The evaluators due at `step` (None: all), their metrics in one dict ('<name>_ema/'
        for EMA weights); None when `stop` abandoned one."""
        variables = state.eval_variables(ema=ema)
        metrics = {}
        for ev in self.evaluators:
            every = self.cadence[ev.name]  # 0: after the last step only
            if step is not None and (not every or step % every):
                continue
            m = build.evaluate_state(self.exp, variables, None, ev, stop)
            if m is None:
                return None
            if ema:
                m = {k.replace(f"{ev.name}/", f"{ev.name}_ema/", 1): v for k, v in m.items()}
            metrics.update(m)
        return metrics

    def after_eval(self, state, metrics):
        """Reduce-on-plateau: the decision is part of the (checkpointed) optimizer state."""
        if self.config.schedule.name != "plateau" or "eval/top1" not in metrics:
            return state
        schedule = self.config.schedule
        return state.replace(
            opt_state=optim.plateau_update(state.opt_state, metrics["eval/top1"], schedule)
        )

    def flush(self, step: int) -> None:
        self.log.flush(step, self.timer, self.health, self.speed)

    @contextlib.contextmanager
    def not_training(self):
        """Evaluation or compilation: out of the step time and the host share."""
        with self.timer.excluded(), self.speed.not_a_step():
            yield

    def save(self, step: int, state, wait: bool) -> None:
        # Never checkpoint a diverged state; the log window goes on (issue 33).
        self.log.check(step)
        with self.timer.excluded():
            if not bool(all_finite(state.params)):
                raise TrainingDiverged(
                    f"Parameters became non-finite by step {step}; not saving; "
                    f"{self.last_good()}. Lower the learning rate."
                )
            self.ckpt.save(step, state, wait=wait)

    def periodic_eval(self, step: int, state):
        with self.not_training():
            metrics = self.evaluate(state, step=step)
            if not metrics:
                return state, {}
            self.log.write(step, metrics)
            self.health.add_eval(step, metrics)
            return self.after_eval(state, metrics), metrics

    def final_eval(self, step: int, state) -> dict | None:
        """Evaluation of the last state (and its EMA); None when SIGTERM abandoned it."""
        # SIGTERM here abandons the evaluation; the final checkpoint is saved (by the caller)
        # and the restart evaluates it without training again.
        stop = (lambda: self.preemption.requested) if jax.process_count() == 1 else None
        final = self.evaluate(state, stop=stop)
        # Per-class arrays of the final pass (not the EMA one), for results.npz.
        self.arrays = {f"{e.name}/{k}": v for e in self.evaluators for k, v in e.arrays.items()}
        if final is not None and state.ema_params is not None:
            ema = self.evaluate(state, ema=True, stop=stop)
            if ema is None:
                return None
            final.update(ema)
        if final is not None:
            self.log.write(step, final)
            self.health.add_eval(step, final)
        return final


def _step_loop(run: _Run, state, start_step: int, step_callback):
    """Trains from `start_step` to the end or to a SIGTERM: the state, the step reached, the
    last evaluation's metrics and whether it was preempted."""
    log, timer, profiler = run.log, run.timer, run.profiler
    sharding = batch_sharding(run.exp.mesh)
    # Batches placed on the device ahead; the host waits only when DEPTH steps are queued.
    batches = feeding.prefetch_to_device(run.train_input.iterate(start_step), sharding)
    in_flight = feeding.InFlight()
    step, eval_metrics, total = start_step, {}, log.total_steps
    while step < total:
        with timer.waiting_for_data():
            batch = next(batches)
        profiler.before_step(step)
        compiling = step == start_step  # the first call traces and compiles
        with run.not_training() if compiling else contextlib.nullcontext():
            t_call = time.perf_counter()
            with profiler.annotation(step):
                state, metrics = run.step_fn(state, batch, run.step_rng)
            if compiling:
                compile_s = time.perf_counter() - t_call
                logging.info("train step compiled in %.1f s", compile_s)
                # The compilation cache answers: the step's cost analysis, nothing recompiled.
                compiled = run.step_fn.lower(state, batch, run.step_rng).compile()
                run.speed.compiled(compiled, compile_s)
        run.speed.dispatched(metrics["loss"])
        in_flight.add(metrics["loss"])
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
        if stop:
            run.flush(step)  # the steps since the last line are not trained again
        if step % run.ckpt_every == 0 or step == total or stop:
            run.save(step, state, wait=stop)
        if stop:
            logging.warning("SIGTERM: saved checkpoint at step %d; exiting.", step)
            return state, step, eval_metrics, True
        if step != total and any(e and step % e == 0 for e in run.cadence.values()):
            in_flight.drain()  # the steps' own time, not the evaluation's
            state, metrics = run.periodic_eval(step, state)
            eval_metrics = {**eval_metrics, **metrics}
    return state, step, eval_metrics, False


def _train_and_evaluate(config, exp, workdir, t_start, changes, preemption, step_callback):
    """The run itself, with the workdir checked and locked (see `train_and_evaluate`)."""
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    pidx, _ = process_info()
    inputs = build.make_train_input(exp), build.make_evaluators(exp)
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
    logging.info("convolutions: %s", backends.describe())
    log = MetricsLog(workdir, start_step, total_steps, t_start, pidx, lambda: run.last_good())
    step_fn = build.experiment_train_step(exp, schedule, shardings)
    step_rng = jax.device_put(step_rng, replicated(exp.mesh))
    run = _Run(exp, workdir, inputs, ckpt, step_fn, step_rng, preemption, log)
    return _run_and_finish(run, state, start_step, step_callback, n_params)


def _run_and_finish(run: _Run, state, start_step: int, step_callback, n_params: int) -> dict:
    """The step loop, the final evaluation and results.json; the checkpointer is closed."""
    config, exp, log = run.config, run.exp, run.log
    resumed_at_eval = (
        0 < start_step < log.total_steps and run.eval_every and start_step % run.eval_every == 0
    )
    if config.schedule.name == "plateau" and resumed_at_eval:
        # Checkpoints at an eval step are written before that eval; redo its lr decision.
        state = run.after_eval(state, run.evaluate(state, step=start_step))
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
        run.speed.close()
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
        # What the model's cost needs without the data (scripts/results.py's MACs).
        "eval_image_size": exp.eval_image_size,
        "channels": exp.channels,
        "num_classes": exp.model.num_classes,
        "wall_time_s": log.wall_time(),  # over all segments
        **log.last_train,
        "dtype_requested": exp.dtype_requested,
        **run.speed.results(),  # this segment's speed against its chips (and compute_dtype)
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
        with writing(wd.results_path(run.workdir)):
            if run.arrays:  # evaluators' per_class option
                wd.write_npz_atomic(wd.arrays_path(wd.results_path(run.workdir)), run.arrays)
            wd.write_json_atomic(wd.results_path(run.workdir), results)
    logging.info("results: %s", results)
    return results
