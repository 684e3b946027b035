"""Optimizers and learning-rate schedules, built from the `optim` and `schedule` config.

The config gives `base_lr` per 256 images and lengths in epochs; `scaled_lr` scales the rate by
the global batch (Goyal et al. 2017's linear rule) and `make_schedule` turns epochs into steps,
so configs hold no derived values. `OPTIMIZERS` and `SCHEDULES` map the config's names to their
builders; the config schema (cnnx/config_schema.py) holds every default.
"""

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from cnnx.errors import ConfigError


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule: lr = base_lr × batch / 256."""
    return base_lr * global_batch / 256.0


def _constant(cfg, peak_lr, steps_per_epoch, decay_steps, warmup):
    del cfg, steps_per_epoch, decay_steps, warmup
    return optax.constant_schedule(peak_lr)


def _cosine(cfg, peak_lr, steps_per_epoch, decay_steps, warmup):
    del steps_per_epoch, warmup
    return optax.cosine_decay_schedule(peak_lr, decay_steps, alpha=cfg.end_lr_factor)


def _multistep(cfg, peak_lr, steps_per_epoch, decay_steps, warmup):
    del decay_steps
    # Boundaries count from the end of warmup (the joined schedule restarts its count there).
    boundaries = {
        max(1, round(e * steps_per_epoch) - warmup): cfg.decay_factor for e in cfg.decay_epochs
    }
    return optax.piecewise_constant_schedule(peak_lr, boundaries)


def _exponential(cfg, peak_lr, steps_per_epoch, decay_steps, warmup):
    del decay_steps, warmup
    return optax.exponential_decay(
        peak_lr,
        transition_steps=max(1, round(cfg.decay_every_epochs * steps_per_epoch)),
        decay_rate=cfg.decay_factor,
        staircase=True,
    )


# Schedule name (`schedule.name`) -> builder(cfg, peak_lr, steps_per_epoch, decay_steps,
# warmup_steps) of the part after warmup. The config's rules take their choices from the keys.
SCHEDULES = {
    "constant": _constant,
    "cosine": _cosine,  # to end_lr_factor × peak
    "step": _multistep,  # × decay_factor at each epoch of decay_epochs
    # × decay_factor every decay_every_epochs, staircase: EfficientNet's ×0.97 every 2.4
    # epochs, Inception v3's ×0.94 every 2.
    "exponential": _exponential,
    # Constant here; the loop multiplies the rate by decay_factor when eval accuracy stalls
    # (`plateau_update`).
    "plateau": _constant,
}


def _unknown(what: str, name, table) -> ConfigError:
    return ConfigError(f"Unknown {what} {name!r}; use one of {', '.join(map(repr, table))}.")


def make_schedule(cfg, peak_lr: float, steps_per_epoch: int, total_steps: int):
    """Learning rate as a function of the step: `cfg.warmup_epochs` of linear warmup from 0,
    then the schedule `SCHEDULES[cfg.name]`.

    Args:
      cfg: the `schedule` config section.
      peak_lr: the rate after warmup (`scaled_lr` of the config's base_lr).
      steps_per_epoch: converts the config's epochs to steps.
      total_steps: the run's length (cosine decays over what follows warmup).

    Raises:
      ConfigError: an unknown schedule name.
    """
    if cfg.name not in SCHEDULES:
        raise _unknown("schedule", cfg.name, SCHEDULES)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    main = SCHEDULES[cfg.name](cfg, peak_lr, steps_per_epoch, max(1, total_steps - warmup), warmup)
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup), main], [warmup])


def decay_mask(params, decay_all: bool, exclude: str):
    """True for parameters that get weight decay: kernels, not biases or norm parameters.

    Args:
      params: the parameter tree.
      decay_all: decay every parameter (the ResNet CIFAR paper's L2 on everything).
      exclude: regex on the module path ('stage1/block0/bn'); matching kernels get no decay
        (the schema's `optim.decay_exclude` names biases and normalisation layers).

    Returns:
      A tree of bools shaped like `params`.
    """
    flat = traverse_util.flatten_dict(params)
    mask = {
        k: bool(decay_all) or (k[-1] == "kernel" and not re.search(exclude, "/".join(k[:-1])))
        for k in flat
    }
    # Norm layers' "scale" and biases never match "kernel"; BN sits in modules named bn.
    return traverse_util.unflatten_dict(mask)


class LrScaleState(NamedTuple):
    """The reduce-on-plateau state, kept in the optimizer state (so it is checkpointed).

    lr_scale multiplies every update; best and bad_evals track the monitored eval metric.
    """

    lr_scale: jax.Array
    best: jax.Array
    bad_evals: jax.Array


def scale_by_lr_scale() -> optax.GradientTransformation:
    """Multiplies updates by the `lr_scale` leaf of its state (1.0 until a plateau)."""

    def init(params):
        del params
        return LrScaleState(
            lr_scale=jnp.ones((), jnp.float32),
            best=jnp.full((), -jnp.inf, jnp.float32),
            bad_evals=jnp.zeros((), jnp.int32),
        )

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: u * state.lr_scale.astype(u.dtype), updates), state

    return optax.GradientTransformation(init, update)


def _is_lr_state(x) -> bool:
    return isinstance(x, LrScaleState)


def _find_lr_state(opt_state) -> LrScaleState | None:
    """The first `LrScaleState` anywhere in an optimizer state (wrappers such as
    `optax.multi_transform` hold one per parameter group; all are kept equal)."""
    for leaf in jax.tree.leaves(opt_state, is_leaf=_is_lr_state):
        if _is_lr_state(leaf):
            return leaf
    return None


def lr_scale(opt_state):
    """The current plateau multiplier of an optimizer state (1.0 when there is none)."""
    found = _find_lr_state(opt_state)
    return jnp.ones((), jnp.float32) if found is None else found.lr_scale


def _replace_lr_state(opt_state, new: LrScaleState):
    return jax.tree.map(lambda x: new if _is_lr_state(x) else x, opt_state, is_leaf=_is_lr_state)


def plateau_update(opt_state, metric: float, cfg):
    """After an evaluation: reduce the rate when `metric` (higher is better) has stalled.

    The rate is multiplied by `cfg.decay_factor` (÷10 as in Krizhevsky et al. 2012,
    Simonyan & Zisserman 2014 and He et al. 2015) once `metric` has failed to beat the best
    value by more than `cfg.min_delta` for `cfg.patience` consecutive evaluations. Runs on the
    host between steps; the new leaves keep the shardings of the old ones.

    Returns:
      The optimizer state with the updated `LrScaleState`.
    """
    old = _find_lr_state(opt_state)
    if old is None:
        raise ValueError("optimizer state has no LrScaleState; build it with make_optimizer")
    scale, best, bad = float(old.lr_scale), float(old.best), int(old.bad_evals)
    if metric > best + cfg.min_delta:
        best, bad = metric, 0
    else:
        bad += 1
        if bad >= cfg.patience:
            scale, bad = scale * cfg.decay_factor, 0

    def put(value, like):
        value = jnp.asarray(value, like.dtype)
        sharding = getattr(like, "sharding", None)
        return jax.device_put(value, sharding) if sharding is not None else value

    new = LrScaleState(put(scale, old.lr_scale), put(best, old.best), put(bad, old.bad_evals))
    return _replace_lr_state(opt_state, new)


def _is_schedule_state(x) -> bool:
    return isinstance(x, optax.ScaleByScheduleState)


def at_step(opt_state, step):
    """The optimizer state with every schedule count set to the training step `step`.

    optax keeps its own count for a schedule (`ScaleByScheduleState`, one per parameter group
    under `optax.multi_transform`), which stops when a step's update is discarded
    (`train.on_nonfinite=skip`) while the trainer's step moves on; the schedule would then lag
    the logged rate. Setting the counts from the one step counter before each update makes
    the applied rate `schedule(step)` everywhere: after skipped steps, in every group, and on
    resuming a checkpoint. Other counts (Adam's bias correction) count real updates and stay.

    Args:
      opt_state: an optimizer state from `make_optimizer` (possibly wrapped).
      step: the training step, an integer scalar (traced or not).

    Returns:
      The same structure, each count in its own dtype.
    """

    def set_count(x):
        if not _is_schedule_state(x):
            return x
        return optax.ScaleByScheduleState(count=jnp.asarray(step, x.count.dtype))

    return jax.tree.map(set_count, opt_state, is_leaf=_is_schedule_state)


def _sgd(cfg, schedule, mask):
    # Coupled L2 (added to the gradient before momentum), as torch.optim.SGD does.
    decay = [optax.add_decayed_weights(cfg.weight_decay, mask)] if cfg.weight_decay else []
    return [*decay, optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov)]


def _rmsprop(cfg, schedule, mask):
    decay = [optax.add_decayed_weights(cfg.weight_decay, mask)] if cfg.weight_decay else []
    rms = optax.rmsprop(
        schedule,
        decay=cfg.rms_decay,
        eps=cfg.eps,
        initial_scale=cfg.rms_initial_scale,
        momentum=cfg.momentum or None,
        nesterov=cfg.nesterov,
        eps_in_sqrt=True,
    )
    return [*decay, rms]


def _adaptive(adaptive):
    # AdamW and LAMB take the same hyper-parameters; LAMB adds the layer-wise trust ratio.
    def build(cfg, schedule, mask):
        return [
            adaptive(
                schedule,
                b1=cfg.b1,
                b2=cfg.b2,
                eps=cfg.eps,
                weight_decay=cfg.weight_decay,
                mask=mask,
            )
        ]

    return build


def _lars(cfg, schedule, mask):
    return [
        optax.lars(
            schedule,
            weight_decay=cfg.weight_decay,
            weight_decay_mask=mask,
            trust_coefficient=cfg.trust_coefficient,
            trust_ratio_mask=mask,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
        )
    ]


# Optimizer name (`optim.name`) -> builder(cfg, schedule, decay mask) of its transformations.
# The config's rules take their choices from the keys.
OPTIMIZERS = {
    "sgd": _sgd,
    "rmsprop": _rmsprop,
    "adamw": _adaptive(optax.adamw),
    "lamb": _adaptive(optax.lamb),
    "lars": _lars,
}


def make_optimizer(cfg, schedule) -> optax.GradientTransformation:
    """The optimizer of the `optim` config, with masked weight decay, optional clipping and
    the reduce-on-plateau multiplier (`scale_by_lr_scale`, last in the chain).

    'sgd': momentum / Nesterov with coupled L2 (torch.optim.SGD). 'rmsprop': TensorFlow's
    definition, ε inside the square root and the mean square initialised to
    `cfg.rms_initial_scale` (1.0 as TF1's RMSPropOptimizer and timm's RMSpropTF, used by
    EfficientNet and Inception v3); momentum after the learning rate as TF. 'adamw':
    decoupled decay (Loshchilov & Hutter 2019). 'lamb' (You et al. 2019) and 'lars' (You et
    al. 2017, trust ratio and decay masked like the decay mask, as the MLPerf reference
    excludes BN and biases).

    Args:
      cfg: the `optim` config section (every field of the schema's `optim`).
      schedule: the learning rate as a function of the step (`make_schedule`).

    Raises:
      ConfigError: an unknown optimizer name.
    """
    if cfg.name not in OPTIMIZERS:
        raise _unknown("optimizer", cfg.name, OPTIMIZERS)
    mask = lambda p: decay_mask(p, cfg.decay_all, cfg.decay_exclude)  # noqa: E731
    clip = [optax.clip_by_global_norm(cfg.grad_clip_norm)] if cfg.grad_clip_norm else []
    return optax.chain(*clip, *OPTIMIZERS[cfg.name](cfg, schedule, mask), scale_by_lr_scale())
