"""The experiment assembly shared by training, evaluation, FixRes and the linear probe.

From an `Experiment` (`cnnx.train.experiment.setup`): the train and eval inputs, the schedule
and optimizer, the sharded initial state, the jitted train step and an evaluation pass. The
training loop (`cnnx.train.loop`) runs these; nothing else needs to import the loop.
"""

import dataclasses
import functools

import jax
import numpy as np

from cnnx.data import EvalInput, TrainInput, get_source
from cnnx.errors import ConfigError
from cnnx.evaluate import entries, registry
from cnnx.parallel.sharding import log_placement, shardings_from_config
from cnnx.train import distill, finetune, layer_decay, optim, steps
from cnnx.train.experiment import Experiment, process_info
from cnnx.train.memory import check_state_fits
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
    exp: Experiment, variables, eval_input: EvalInput | None, evaluator, stop=None
) -> dict | None:
    """One evaluation of the model's variables (the loop's, the linear probe's and FixRes's).

    Args:
      exp: the experiment.
      variables: the model's variables ({'params', 'batch_stats'}), any sharding.
      eval_input: the split (None: the evaluator's own).
      evaluator: a `cnnx.evaluate.registry` evaluator (`make_evaluators`, `make_eval_fn`).
      stop: optional `fn() -> bool` checked between batches; when it says so the pass is
        abandoned and None returned (SIGTERM during the final evaluation).

    Returns:
      The evaluator's scalars, '<name>/loss', '<name>/top1', '<name>/top5' (in %; top-5 only
      for 6 classes or more), '<name>/nll', '<name>/ece', '<name>/examples' ('eval/...' for the
      default evaluator), or None when stopped.
    """
    del exp  # the evaluator holds the mesh
    return evaluator((variables,), stop, eval_input=eval_input)


def make_eval_fn(exp: Experiment, num_classes: int):
    """The default evaluator ('eval') of `exp.model` without an input of its own, for
    `evaluate_state` with an input; `num_classes` is the logits' width."""
    if exp.model.num_classes != num_classes:
        raise ValueError(f"{exp.model.num_classes} model classes, {num_classes} expected")
    entry = entries.resolve(exp.config, [entries.DEFAULT])[0]
    return registry.create(entry, None, (exp.model.apply,), exp.mesh, num_classes)


def make_evaluators(
    exp: Experiment,
    names=None,
    *,
    apply_fns: tuple | None = None,
    confusion: bool = False,
    split: str | None = None,
    image_size: int | None = None,
    pp=None,
) -> list:
    """The evaluators of the config's `evals` entries (`cnnx.evaluate.entries.resolve`), each
    with its own input (source, split, preprocessing, resolution, crop ratio).

    Args:
      exp: the experiment.
      names: only these evaluators (eval.py's --evals); None: 'eval' and every entry.
      apply_fns: the models whose probabilities are averaged (default: `exp.model`'s).
      confusion: also sum confusion matrices (eval.py).
      split: another split for the default evaluator (eval.py --split).
      image_size: another resolution for every evaluator (eval.py --image_size).
      pp: `fn(pp) -> pp` applied to every evaluator's preprocessing (eval.py --views).

    Raises:
      ConfigError: a bad entry, an unknown name, or an entry's data whose class count differs
        from the model's.
    """
    c = exp.config
    out = []
    for entry in entries.resolve(c, names):
        source = exp.source
        if entry.own_source:
            source = get_source(entry.data, image_size=exp.image_size)
            if source.num_classes != exp.model.num_classes:
                raise ConfigError(
                    f"--config.evals.{entry.name}: {source.name} has {source.num_classes} "
                    f"classes, the model predicts {exp.model.num_classes}."
                )
        sets = entry.options.get("labels") == "real"
        if sets != bool(getattr(source, "label_sets", False)):
            raise ConfigError(
                f"--config.evals.{entry.name}.options.labels={entry.options.get('labels')!r}, "
                f"but {source.name} has {'label sets' if not sets else 'one label per image'}; "
                "use labels='real' exactly for label-set data (tfds:imagenet2012_real)."
            )
        ctx = exp.pp_context(train=False, image_size=image_size or entry.image_size)
        if entry.crop_pct is not None:
            ctx = dataclasses.replace(ctx, crop_pct=entry.crop_pct)
        pidx, pcount = process_info()
        eval_input = EvalInput(
            source=source,
            split=(split if entry.name == entries.DEFAULT and split else entry.split),
            pp=pp(entry.pp) if pp else entry.pp,
            ctx=ctx,
            global_batch=c.eval.batch_size,
            process_index=pidx,
            process_count=pcount,
        )
        fns = apply_fns or (exp.model.apply,)
        out.append(
            registry.create(
                entry, eval_input, fns, exp.mesh, exp.model.num_classes, confusion=confusion
            )
        )
    return out


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
    check_state_fits(abstract, shardings, exp.spec.name)  # before allocating any of it
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
