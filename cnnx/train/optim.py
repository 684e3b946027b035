"""Optimizers and learning-rate schedules, built from the `optim` and `schedule` config.

The config gives `base_lr` per 256 images and lengths in epochs; `build` scales the rate by the
global batch (Goyal et al. 2017's linear rule) and turns epochs into steps, so configs hold no
derived values.
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


def make_schedule(cfg, peak_lr: float, steps_per_epoch: int, total_steps: int):
    """Learning rate as a function of the step.

    Schedules (`cfg.name`): 'constant'; 'cosine' (to `cfg.end_lr_factor` × peak); 'step'
    (× `cfg.decay_factor` at each epoch in `cfg.decay_epochs`: multi-step); 'exponential'
    (× decay_factor every `cfg.decay_every_epochs`, staircase: EfficientNet's ×0.97 every 2.4
    epochs, Inception v3's ×0.94 every 2); 'plateau' (constant here; the loop multiplies
    the rate by decay_factor when eval accuracy stalls, see `plateau_update`). All start with
    `cfg.warmup_epochs` of linear warmup from 0.
    """
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    name = cfg.name
    if name in ("constant", "plateau"):
        main = optax.constant_schedule(peak_lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(
            peak_lr, max(1, total_steps - warmup), alpha=cfg.end_lr_factor
        )
    elif name == "step":
        boundaries = {
            max(1, round(e * steps_per_epoch) - warmup): cfg.decay_factor for e in cfg.decay_epochs
        }
        main = optax.piecewise_constant_schedule(peak_lr, boundaries)
    elif name == "exponential":
        main = optax.exponential_decay(
            peak_lr,
            transition_steps=max(1, round(cfg.decay_every_epochs * steps_per_epoch)),
            decay_rate=cfg.decay_factor,
            staircase=True,
        )
    else:
        raise ConfigError(
            f"Unknown schedule {name!r}; use 'constant', 'cosine', 'step', 'exponential' or "
            "'plateau'."
        )
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup), main], [warmup])


DEFAULT_DECAY_EXCLUDE = r"(bias|scale|bn|norm|embedding|token)"


def decay_mask(params, decay_all: bool, exclude: str = DEFAULT_DECAY_EXCLUDE):
    """True for parameters that get weight decay: kernels, not biases or norm parameters.

    Args:
      params: the parameter tree.
      decay_all: decay every parameter (the ResNet CIFAR paper's L2 on everything).
      exclude: regex on the module path ('stage1/block0/bn'); matching kernels get no decay.
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


def make_optimizer(cfg, schedule) -> optax.GradientTransformation:
    """The optimizer of the `optim` config, with masked weight decay, optional clipping and
    the reduce-on-plateau multiplier (`scale_by_lr_scale`, last in the chain).

    'sgd': momentum / Nesterov with coupled L2 (torch.optim.SGD). 'rmsprop': TensorFlow's
    definition, ε inside the square root and the mean square initialised to
    `cfg.rms_initial_scale` (1.0 in TF1's RMSPropOptimizer, used by Inception v3); momentum
    after the learning rate as TF. 'adamw': decoupled decay (Loshchilov & Hutter). 'lamb'
    (You et al. 2019) and 'lars' (You et al. 2017, trust ratio and decay masked like the decay
    mask, as the MLPerf reference excludes BN and biases).
    """
    parts = []
    if cfg.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    exclude = cfg.get("decay_exclude", DEFAULT_DECAY_EXCLUDE)
    mask = lambda p: decay_mask(p, cfg.decay_all, exclude)  # noqa: E731
    name = cfg.name
    if name == "sgd":
        # Coupled L2 (added to the gradient before momentum), as torch.optim.SGD does.
        if cfg.weight_decay:
            parts.append(optax.add_decayed_weights(cfg.weight_decay, mask))
        parts.append(optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
    elif name == "rmsprop":
        if cfg.weight_decay:
            parts.append(optax.add_decayed_weights(cfg.weight_decay, mask))
        parts.append(
            optax.rmsprop(
                schedule,
                decay=cfg.rms_decay,
                eps=cfg.eps,
                initial_scale=cfg.get("rms_initial_scale", 0.0),
                momentum=cfg.momentum or None,
                nesterov=cfg.nesterov,
                eps_in_sqrt=True,
            )
        )
    elif name in ("adamw", "lamb"):  # same hyper-parameters; LAMB adds the trust ratio
        adaptive = optax.adamw if name == "adamw" else optax.lamb
        parts.append(
            adaptive(
                schedule,
                b1=cfg.b1,
                b2=cfg.b2,
                eps=cfg.eps,
                weight_decay=cfg.weight_decay,
                mask=mask,
            )
        )
    elif name == "lars":
        parts.append(
            optax.lars(
                schedule,
                weight_decay=cfg.weight_decay,
                weight_decay_mask=mask,
                trust_coefficient=cfg.get("trust_coefficient", 0.001),
                trust_ratio_mask=mask,
                momentum=cfg.momentum,
                nesterov=cfg.nesterov,
            )
        )
    else:
        raise ConfigError(
            f"Unknown optimizer {name!r}; use 'sgd', 'rmsprop', 'adamw', 'lamb' or 'lars'."
        )
    parts.append(scale_by_lr_scale())
    return optax.chain(*parts)


def soft_cross_entropy(logits, targets):
    """Per-example cross entropy against soft targets (mixup/cutmix), in float32."""
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets.astype(jnp.float32))


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
    """Per-example softmax cross entropy with label smoothing, computed in float32."""
    targets = (
        optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
        if (label_smoothing)
        else jax.nn.one_hot(labels, num_classes)
    )
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
