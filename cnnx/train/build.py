"""The experiment assembly shared by training, evaluation, FixRes and the linear probe.

From an `Experiment` (`cnnx.train.experiment.setup`): the train and eval inputs, the schedule
and optimizer, the sharded initial state, the jitted train step and an evaluation pass. The
training loop (`cnnx.train.loop`) runs these; nothing else needs to import the loop.
"""

import functools

import jax
import numpy as np

from cnnx.data import EvalInput, TrainInput
from cnnx.evaluate import classification
from cnnx.parallel.sharding import log_placement, shardings_from_config
from cnnx.train import distill, finetune, layer_decay, optim, steps
from cnnx.train.experiment import Experiment, process_info
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
        repeats=c.data.get("repeated_augmentation", 1),
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
    """One pass over an eval split (`cnnx.evaluate.classification.evaluate`, eval.py's path).

    Args:
      exp: the experiment (its mesh shards the batches).
      variables: the model's variables ({'params', 'batch_stats'}), any sharding.
      eval_input: the split.
      eval_fn: `make_eval_fn(exp, num_classes)`.
      stop: optional `fn() -> bool` checked between batches; when it says so the pass is
        abandoned and None returned (SIGTERM during the final evaluation).

    Returns:
      The scalars 'eval/loss', 'eval/top1', 'eval/top5' (in %; top-5 only for 6 classes or
      more) and 'eval/examples', or None when stopped.
    """
    results = classification.evaluate(eval_fn, (variables,), eval_input, exp.mesh, stop=stop)
    if results is None:
        return None
    return {k: v for k, v in results.items() if k.startswith("eval/")}


def make_eval_fn(exp: Experiment, num_classes: int):
    """The jitted per-batch evaluation of `exp.model` (`classification.make_batch_sums` of one
    model, no confusion matrix), for `evaluate_state`; `num_classes` is the logits' width."""
    if exp.model.num_classes != num_classes:
        raise ValueError(f"{exp.model.num_classes} model classes, {num_classes} expected")
    return classification.make_batch_sums((exp.model.apply,), exp.mesh, confusion=False)


def make_schedule(config, steps_per_epoch: int, total_steps: int):
    """The learning-rate schedule, its peak `optim.base_lr` scaled to the global batch."""
    peak_lr = optim.scaled_lr(config.optim.base_lr, config.train.batch_size)
    return optim.make_schedule(config.schedule, peak_lr, steps_per_epoch, total_steps)


def make_tx(config, schedule):
    """The optimizer of a config, with frozen / slowed parameter groups and layer-wise decay
    (`optim.layer_decay`, multiplying the regex multiplier) applied."""
    tx = optim.make_optimizer(config.optim, schedule)
    tx = finetune.partition_optimizer(
        tx, config.train.trainable, config.train.lr_mult_pattern, config.train.lr_mult
    )
    return layer_decay.with_layer_decay(tx, config)


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
    layer_decay.log_multipliers(exp.config, abstract.params)
    # Parameters, their optimizer state and EMA copies by `config.mesh` (replicated unless
    # fsdp/model > 1 or rules say otherwise); created in place, never gathered on one device.
    shardings = shardings_from_config(abstract, exp.mesh, exp.config.mesh)
    log_placement(abstract, shardings, exp.mesh)
    return jit_initialize(create, rng, shardings), shardings


def experiment_train_step(exp: Experiment, schedule, state_shardings):
    """The jitted, donated train step of an experiment: `steps.make_train_step` (the one
    builder) with the experiment's model, mesh, `StepOptions` and remat setting."""
    return steps.make_train_step(
        num_classes=exp.model.num_classes,
        schedule=schedule,
        mesh=exp.mesh,
        state_shardings=state_shardings,
        options=steps.StepOptions.from_config(exp.config.train),
        remat=bool(exp.config.model.get("remat")),
        teacher=distill.load_teacher(exp.config, exp.model.num_classes, exp.input_shape[1:]),
    )


def agree_with_process_0():
    """`fn(ok) -> process 0's ok` on every process, or None for a single process."""
    if jax.process_count() == 1:
        return None
    from jax.experimental import multihost_utils

    return lambda ok: bool(multihost_utils.broadcast_one_to_all(np.asarray(ok)))
