"""The experiment assembly shared by training, evaluation, FixRes and the linear probe.

From an `Experiment` (`cnnx.train.experiment.setup`): the train and eval inputs, the schedule
and optimizer, the sharded initial state, the jitted train step and an evaluation pass. The
training loop (`cnnx.train.loop`) runs these; nothing else needs to import the loop.
"""

import functools

import jax
import numpy as np

from cnnx.data import EvalInput, TrainInput, to_global
from cnnx.train import finetune, optim, steps
from cnnx.train.experiment import Experiment, process_info
from cnnx.train.mesh import batch_sharding, replicated
from cnnx.train.sharding import log_placement, shardings_from_config
from cnnx.train.state import create_train_state, jit_initialize


def train_steps(config, steps_per_epoch: int) -> int:
    """Optimizer steps of a run: `train.num_steps`, else `train.num_epochs` epochs (>= 1)."""
    if config.train.num_steps:
        return int(config.train.num_steps)
    return max(1, round(config.train.num_epochs * steps_per_epoch))


def make_train_input(exp: Experiment) -> TrainInput:
    """The training input of an experiment (this process's share of each global batch)."""
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
    """An evaluation input: the config's eval split, size and preprocessing unless given."""
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
    """The jitted per-batch evaluation (`steps.eval_step`), its sums replicated."""
    return jax.jit(
        functools.partial(steps.eval_step, apply_fn=exp.model.apply, num_classes=num_classes),
        out_shardings=replicated(exp.mesh),
    )


def make_schedule(config, steps_per_epoch: int, total_steps: int):
    """The learning-rate schedule, its peak `optim.base_lr` scaled to the global batch."""
    peak_lr = optim.scaled_lr(config.optim.base_lr, config.train.batch_size)
    return optim.make_schedule(config.schedule, peak_lr, steps_per_epoch, total_steps)


def make_tx(config, schedule):
    """The optimizer of a config, with frozen / slowed parameter groups applied."""
    tx = optim.make_optimizer(config.optim, schedule)
    return finetune.partition_optimizer(
        tx, config.train.trainable, config.train.lr_mult_pattern, config.train.lr_mult
    )


def init_state(exp: Experiment, tx, rng):
    """Abstract shapes first (`jax.eval_shape`), then a sharded, jitted initialisation.

    Returns:
      (the `TrainState`, its shardings).
    """
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


def make_train_step(exp: Experiment, schedule, state_shardings):
    """The jitted, donated train step of an experiment (`steps.make_train_step` with the
    config's `StepOptions` and remat setting)."""
    return steps.make_train_step(
        num_classes=exp.model.num_classes,
        schedule=schedule,
        mesh=exp.mesh,
        state_shardings=state_shardings,
        options=steps.StepOptions.from_config(exp.config.train),
        remat=bool(exp.config.model.get("remat")),
    )


def agree_with_process_0():
    """`fn(ok) -> process 0's ok` on every process, or None for a single process."""
    if jax.process_count() == 1:
        return None
    from jax.experimental import multihost_utils

    return lambda ok: bool(multihost_utils.broadcast_one_to_all(np.asarray(ok)))
