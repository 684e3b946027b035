"""Optimizers and learning-rate schedules, built from the `optim` and `schedule` config.

The config gives `base_lr` per 256 images and lengths in epochs; `build` scales the rate by the
global batch (Goyal et al. 2017's linear rule) and turns epochs into steps, so configs hold no
derived values.
"""

import re

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
    (× `cfg.decay_factor` at each epoch in `cfg.decay_epochs`); 'exponential' (× decay_factor
    every `cfg.decay_every_epochs`, staircase, EfficientNet's ×0.97 every 2.4 epochs). All
    start with `cfg.warmup_epochs` of linear warmup from 0.
    """
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    name = cfg.name
    if name == "constant":
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
            f"Unknown schedule {name!r}; use 'constant', 'cosine', 'step' or 'exponential'."
        )
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup), main], [warmup])


def decay_mask(params, decay_all: bool, exclude: str = r"(bias|scale|bn|norm|embedding|token)"):
    """True for parameters that get weight decay: kernels, not biases or norm parameters."""
    flat = traverse_util.flatten_dict(params)
    mask = {
        k: bool(decay_all) or (k[-1] == "kernel" and not re.search(exclude, "/".join(k[:-1])))
        for k in flat
    }
    # Norm layers' "scale" and biases never match "kernel"; BN sits in modules named bn.
    return traverse_util.unflatten_dict(mask)


def make_optimizer(cfg, schedule) -> optax.GradientTransformation:
    """SGD (momentum, Nesterov), RMSProp (TF style) or AdamW with masked weight decay and
    optional gradient clipping."""
    parts = []
    if cfg.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    mask = lambda p: decay_mask(p, cfg.decay_all)  # noqa: E731
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
                momentum=cfg.momentum or None,
                eps_in_sqrt=True,
            )
        )
    elif name == "adamw":
        parts.append(
            optax.adamw(
                schedule,
                b1=cfg.b1,
                b2=cfg.b2,
                eps=cfg.eps,
                weight_decay=cfg.weight_decay,
                mask=mask,
            )
        )
    else:
        raise ConfigError(f"Unknown optimizer {name!r}; use 'sgd', 'rmsprop' or 'adamw'.")
    return optax.chain(*parts)


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
    """Mean softmax cross entropy with label smoothing, computed in float32."""
    targets = (
        optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
        if (label_smoothing)
        else jax.nn.one_hot(labels, num_classes)
    )
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
