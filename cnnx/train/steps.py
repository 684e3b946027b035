"""Pure train and eval steps. `jax.jit` them with `functools.partial` for the static settings."""

import jax
import jax.numpy as jnp
import optax

from cnnx.data import mixing
from cnnx.train.losses import cross_entropy, soft_cross_entropy
from cnnx.train.optim import at_step, lr_scale
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


# Salt folded into the step key for mixup/cutmix draws (dropout uses the step key itself).
_MIX_SALT = 0x6D6978


def options_from_config(train_cfg) -> dict:
    """The static `train_step` settings of a config's `train` section."""
    return {
        "label_smoothing": train_cfg.label_smoothing,
        "aux_loss_weight": train_cfg.aux_loss_weight,
        "ema_decay": train_cfg.ema_decay,
        "ema_warmup": train_cfg.get("ema_warmup", False),
        "mixup_alpha": train_cfg.get("mixup_alpha", 0.0),
        "cutmix_alpha": train_cfg.get("cutmix_alpha", 0.0),
        "mix_prob": train_cfg.get("mix_prob", 1.0),
        "mix_switch_prob": train_cfg.get("mix_switch_prob", 0.5),
        "grad_accum_steps": train_cfg.get("grad_accum_steps", 1),
        "skip_nonfinite": train_cfg.get("on_nonfinite", "stop") == "skip",
    }


def _micro_batches(x, k: int):
    """(B, ...) -> (k, B/k, ...), micro-batch m holding rows m, m+k, m+2k, ...

    Strided rather than contiguous: the batch is sharded over devices in contiguous blocks,
    so every micro-batch keeps rows on every device and needs no data movement.
    """
    return jnp.swapaxes(x.reshape((x.shape[0] // k, k, *x.shape[1:])), 0, 1)


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
    ema_warmup: bool = False,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    mix_prob: float = 1.0,
    mix_switch_prob: float = 0.5,
    grad_accum_steps: int = 1,
    skip_nonfinite: bool = False,
):
    """One optimizer step on a global batch.

    Gradient accumulation (`grad_accum_steps` = k > 1) scans over k micro-batches inside
    this one step and averages their gradients before a single optimizer update, rather than
    using `optax.MultiSteps` (k optimizer calls per update). Why: the loop, the data
    pipeline, the schedule and the checkpoints keep counting real optimizer steps of the
    configured global batch; only one micro-batch's activations are live at a time (the
    point of accumulating); and BatchNorm sees micro-batch statistics and updates its running
    averages once per micro-batch, exactly as k genuinely small batches would. For models
    without BatchNorm the update equals the one of the whole batch (tested).

    Args:
      state: the training state (donated by the caller's jit).
      batch: {'image': (B, H, W, C) float, 'label': (B,) int}.
      rng: the run's base key; it is folded with the step so every step draws fresh dropout /
        drop-path masks and mixing, and a resumed run draws the same ones.
      num_classes, schedule, label_smoothing, aux_loss_weight, ema_decay: static settings.
      ema_warmup: use decay min(ema_decay, (1 + t) / (10 + t)) at step t, as TensorFlow's
        `ExponentialMovingAverage(num_updates=t)`, so short runs do not keep the random
        initialisation in the average.
      mixup_alpha, cutmix_alpha, mix_prob, mix_switch_prob: on-device mixing (see
        `cnnx.data.mixing.mix_batch`); targets become soft and the loss is soft-target CE.
      grad_accum_steps: micro-batches per step (must divide the batch).
      skip_nonfinite: when the loss or the gradient norm is NaN/Inf, keep the old parameters,
        statistics, optimizer and EMA state (the step counter still advances, so data and
        random numbers stay those of an uninterrupted run) and report `skipped` = 1; a
        `jnp.where` over the state, selected on device with no host round trip. The step
        counter is the one clock: the schedule (`optim.at_step`) and EMA warmup follow it, so
        the next step applies schedule(step), not the rate of the step that was skipped.

    Returns:
      (new state, metrics dict of scalars: loss, top1 and top5 (%, against the unmixed
      labels), lr (the rate this step applied: schedule(step) times the plateau multiplier;
      groups under `train.lr_mult_pattern` apply it times lr_mult, frozen ones nothing),
      grad_norm, and skipped (0/1) with `skip_nonfinite`).
    """
    step_rng = jax.random.fold_in(rng, state.step)
    labels = batch["label"]
    images, targets, _ = mixing.mix_batch(
        jax.random.fold_in(step_rng, _MIX_SALT),
        batch["image"],
        labels,
        num_classes,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        prob=mix_prob,
        switch_prob=mix_switch_prob,
        label_smoothing=label_smoothing,
    )

    def loss_fn(params, batch_stats, images, targets, dropout_rng):
        out, updates = state.apply_fn(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_rng},
        )
        logits, aux = _split_outputs(out)
        loss = jnp.mean(soft_cross_entropy(logits, targets))
        total = loss
        for a in aux:
            total += aux_loss_weight * jnp.mean(soft_cross_entropy(a, targets))
        return total, (loss, logits, updates.get("batch_stats", batch_stats))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    k = grad_accum_steps
    if k == 1:
        (_, (loss, logits, batch_stats)), grads = grad_fn(
            state.params, state.batch_stats, images, targets, step_rng
        )
    else:
        if labels.shape[0] % k:
            raise ValueError(f"grad_accum_steps={k} does not divide the batch {labels.shape[0]}")

        def micro(carry, xs):
            stats, grad_sum = carry
            index, imgs, tgts = xs
            (_, (loss, logits, stats)), g = grad_fn(
                state.params, stats, imgs, tgts, jax.random.fold_in(step_rng, index)
            )
            return (stats, jax.tree.map(jnp.add, grad_sum, g)), (loss, logits)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        xs = (jnp.arange(k), _micro_batches(images, k), _micro_batches(targets, k))
        (batch_stats, grad_sum), (losses, logits) = jax.lax.scan(
            micro, (state.batch_stats, zeros), xs
        )
        grads = jax.tree.map(lambda g: g / k, grad_sum)
        loss = jnp.mean(losses)
        logits = logits.reshape((-1, *logits.shape[2:]))
        labels = _micro_batches(labels, k).reshape(-1)

    # One counter drives the schedule: the step (see `optim.at_step`), so the rate applied is
    # the rate logged below, whatever was skipped or restored before.
    updates, opt_state = state.tx.update(grads, at_step(state.opt_state, state.step), state.params)
    params = optax.apply_updates(state.params, updates)
    new = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    if ema_decay is not None and state.ema_params is not None:
        decay = jnp.asarray(ema_decay, jnp.float32)
        if ema_warmup:
            t = state.step.astype(jnp.float32)
            decay = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
        mix = lambda e, p: decay * e + (1.0 - decay) * p  # noqa: E731
        new = new.replace(
            ema_params=jax.tree.map(mix, state.ema_params, params),
            ema_batch_stats=jax.tree.map(mix, state.ema_batch_stats, batch_stats),
        )
    metrics = {
        "loss": loss,
        "top1": 100.0 * jnp.mean(topk_correct(logits, labels, 1)),
        "top5": 100.0 * jnp.mean(topk_correct(logits, labels, 5)),
        "lr": schedule(state.step) * lr_scale(state.opt_state),
        "grad_norm": optax.global_norm(grads),
    }
    if skip_nonfinite:
        # The global norm is finite iff every gradient is (it is computed anyway).
        ok = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"])
        # The optimizer's own schedule count stays too: `at_step` resets it before each update.
        kept = state.replace(step=new.step)
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, kept)
        metrics["skipped"] = 1.0 - ok.astype(jnp.float32)
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
