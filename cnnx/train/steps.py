"""Pure train and eval steps. `jax.jit` them with `functools.partial` for the static settings."""

import jax
import jax.numpy as jnp
import optax

from cnnx.train.optim import cross_entropy
from cnnx.train.state import TrainState


def _split_outputs(out):
    """Models with auxiliary classifiers return (logits, aux_tuple) in train mode."""
    if isinstance(out, tuple):
        return out[0], tuple(out[1])
    return out, ()


def topk_correct(logits, labels, k: int):
    """1.0 where the label is among the k highest logits (k capped at the class count)."""
    k = min(k, logits.shape[-1])
    top = jax.lax.top_k(logits, k)[1]
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def train_step(
    state: TrainState,
    batch: dict,
    rng: jax.Array,
    *,
    num_classes: int,
    schedule,
    label_smoothing: float = 0.0,
    aux_loss_weight: float = 0.3,
    ema_decay: float | None = None,
):
    """One optimizer step on a global batch.

    Args:
      state: the training state (donated by the caller's jit).
      batch: {'image': (B, H, W, C) float, 'label': (B,) int}.
      rng: the run's base key; it is folded with the step so every step draws fresh dropout /
        drop-path masks and a resumed run draws the same ones.
      num_classes, schedule, label_smoothing, aux_loss_weight, ema_decay: static settings.

    Returns:
      (new state, metrics dict of scalars: loss, top1 and top5 (%), lr, grad_norm).
    """
    step_rng = jax.random.fold_in(rng, state.step)
    labels = batch["label"]

    def loss_fn(params):
        out, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["image"],
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": step_rng},
        )
        logits, aux = _split_outputs(out)
        loss = jnp.mean(cross_entropy(logits, labels, num_classes, label_smoothing))
        total = loss
        for a in aux:
            total += aux_loss_weight * jnp.mean(
                cross_entropy(a, labels, num_classes, label_smoothing)
            )
        return total, (loss, logits, updates.get("batch_stats", state.batch_stats))

    (_, (loss, logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    if ema_decay is not None and state.ema_params is not None:
        mix = lambda e, p: ema_decay * e + (1.0 - ema_decay) * p  # noqa: E731
        new = new.replace(
            ema_params=jax.tree.map(mix, state.ema_params, params),
            ema_batch_stats=jax.tree.map(mix, state.ema_batch_stats, batch_stats),
        )
    metrics = {
        "loss": loss,
        "top1": 100.0 * jnp.mean(topk_correct(logits, labels, 1)),
        "top5": 100.0 * jnp.mean(topk_correct(logits, labels, 5)),
        "lr": schedule(state.step),
        "grad_norm": optax.global_norm(grads),
    }
    return new, metrics


def eval_step(variables: dict, batch: dict, *, apply_fn, num_classes: int):
    """Sums of loss, top-1 and top-5 hits over the real (mask 1) examples of a batch."""
    logits = apply_fn(variables, batch["image"], train=False)
    mask = batch["mask"]
    loss = cross_entropy(logits, batch["label"], num_classes)
    return {
        "loss": jnp.sum(loss * mask),
        "top1": jnp.sum(topk_correct(logits, batch["label"], 1) * mask),
        "top5": jnp.sum(topk_correct(logits, batch["label"], 5) * mask),
        "count": jnp.sum(mask),
    }
