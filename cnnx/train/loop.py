"""The training loop: `train_and_evaluate(config, workdir)`.

One `jax.jit`-compiled step over a `Mesh` with the batch sharded on 'data' and the state
replicated; the same code runs on one CPU, eight fake CPU devices, a GPU, or a TPU pod (one
process per host, `jax.distributed` initialised by the entry point).
"""

import functools
import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, parameter_overview, periodic_actions

from cnnx.data import EvalInput, TrainInput, to_global
from cnnx.errors import TrainingDiverged
from cnnx.train import finetune, optim, steps
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import Experiment, process_info, setup
from cnnx.train.mesh import batch_sharding, replicated
from cnnx.train.state import create_train_state


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between steps (so a save is never torn)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: rely on the caller
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            # All hosts agree on the step to stop at (jax.distributed's preemption service).
            from jax.experimental import multihost_utils

            return self.requested or multihost_utils.reached_preemption_sync_point(step)
        return self.requested


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


@jax.jit
def all_finite(tree) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


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


def evaluate_state(exp: Experiment, variables, eval_input: EvalInput, eval_fn) -> dict:
    """Runs one pass over an eval split; returns eval/loss, eval/top1, eval/top5 (in %)."""
    sharding = batch_sharding(exp.mesh)
    totals = None
    for batch in eval_input.iterate():
        sums = eval_fn(variables, to_global(batch, sharding))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    n = float(totals["count"])
    if n != eval_input.num_examples:
        raise AssertionError(f"evaluated {n} examples, expected {eval_input.num_examples}")
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
    shardings = jax.tree.map(lambda _: replicated(exp.mesh), abstract)
    return jax.jit(create, out_shardings=shardings)(rng), shardings


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, step_callback=None
) -> dict:
    """Trains (resuming from the newest checkpoint in `workdir`) and evaluates.

    Args:
      config: the experiment config (see configs/default.py).
      workdir: checkpoints, TensorBoard logs and results.json go here.
      step_callback: optional `fn(step)` called after each step (tests use it).

    Returns:
      The final results (also written to `<workdir>/results.json` by process 0), with
      'status' 'completed' or 'preempted'.
    """
    t_start = time.time()
    exp = setup(config)
    os.makedirs(workdir, exist_ok=True)
    pidx, _ = process_info()
    writer = metric_writers.create_default_writer(workdir, just_logging=pidx > 0)
    if pidx == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))

    train_input = make_train_input(exp)
    eval_input = make_eval_input(exp)
    spe = train_input.steps_per_epoch
    total_steps = train_steps(config, spe)
    num_classes = exp.model.num_classes
    peak_lr = optim.scaled_lr(config.optim.base_lr, config.train.batch_size)
    schedule = optim.make_schedule(config.schedule, peak_lr, spe, total_steps)
    tx = make_tx(config, schedule)
    finetune.check_init_config(config.init)

    rng = jax.random.PRNGKey(config.seed)
    init_rng, step_rng = jax.random.split(rng)
    state, state_shardings = init_state(exp, tx, init_rng)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    if pidx == 0:
        parameter_overview.log_parameter_overview(state.params)
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
        os.path.join(workdir, "checkpoints"),
        max_to_keep=config.ckpt.max_to_keep,
        asynchronous=config.ckpt.asynchronous,
    )
    start_step = 0
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        start_step = int(jax.device_get(state.step))
        logging.info("Resumed from checkpoint at step %d", start_step)
    elif config.init.checkpoint or config.init.torch_weights:
        state = finetune.initialize_from(state, config.init, exp.spec.name, state_shardings)

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
    )
    eval_fn = make_eval_fn(exp, num_classes)
    step_rng = jax.device_put(step_rng, replicated(exp.mesh))

    report = periodic_actions.ReportProgress(
        num_train_steps=total_steps, writer=writer, every_steps=config.train.log_every_steps
    )
    eval_every = config.eval.every_steps or spe
    ckpt_every = config.ckpt.every_steps or spe
    sharding = batch_sharding(exp.mesh)
    pending = []  # device metrics since the last log; fetched only at log time
    eval_metrics: dict = {}
    last_train: dict = {}
    status = "completed"
    step = start_step

    def flush(step):
        nonlocal pending, last_train
        if not pending:
            return
        fetched = jax.device_get(pending)
        pending = []
        summary = {f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
        if not np.isfinite(summary["train/loss"]):
            raise TrainingDiverged(
                f"Loss became {summary['train/loss']} by step {step} (metrics: {summary}). "
                f"Training stopped; the last good checkpoint in {ckpt.directory} "
                f"(step {ckpt.latest_step()}) is intact. Lower the learning rate or check "
                "the data."
            )
        last_train = summary
        writer.write_scalars(step, summary)
        if pidx == 0:
            with open(os.path.join(workdir, "train_metrics.jsonl"), "a") as f:
                f.write(json.dumps({"step": step, **summary}) + "\n")

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
    try:
        with _Preemption() as preemption:
            while step < total_steps:
                batch = to_global(next(batches), sharding)
                state, metrics = step_fn(state, batch, step_rng)
                pending.append(metrics)
                step += 1
                report(step)
                if step_callback is not None:
                    step_callback(step)
                if step % config.train.log_every_steps == 0 or step == total_steps:
                    flush(step)
                stop = preemption.should_stop(step)
                if step % ckpt_every == 0 or step == total_steps or stop:
                    flush(step)  # never checkpoint a diverged state
                    if not bool(all_finite(state.params)):
                        raise TrainingDiverged(
                            f"Parameters became non-finite by step {step}; not saving. The "
                            f"last good checkpoint in {ckpt.directory} (step "
                            f"{ckpt.latest_step()}) is intact. Lower the learning rate."
                        )
                    ckpt.save(step, state, wait=stop)
                if stop:
                    status = "preempted"
                    logging.warning("SIGTERM: saved checkpoint at step %d; exiting.", step)
                    break
                if step % eval_every == 0 and step != total_steps:
                    eval_metrics = evaluate_state(exp, state.eval_variables(), eval_input, eval_fn)
                    writer.write_scalars(step, eval_metrics)
                    state = after_eval(state, eval_metrics)
        if status == "completed":
            eval_metrics = evaluate_state(exp, state.eval_variables(), eval_input, eval_fn)
            if state.ema_params is not None:
                ema = evaluate_state(exp, state.eval_variables(ema=True), eval_input, eval_fn)
                eval_metrics.update({k.replace("eval/", "eval_ema/"): v for k, v in ema.items()})
            writer.write_scalars(step, eval_metrics)
    finally:
        ckpt.close()
        writer.flush()

    results = {
        "status": status,
        "step": step,
        "model": exp.spec.name,
        "num_params": n_params,
        "image_size": exp.image_size,
        "wall_time_s": time.time() - t_start,
        **last_train,
        **eval_metrics,
    }
    if pidx == 0:
        _write_json(os.path.join(workdir, "results.json"), results)
    logging.info("results: %s", results)
    return results
