"""The train and eval steps, and `make_train_step`: the one place a train step is jitted.

The trainer, the benchmark, the memory report, FixRes fine-tuning and the linear probe all
build their step with `make_train_step(..., StepOptions.from_config(config.train))`, so
"the train step" means one thing wherever it is timed, measured or run.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from cnnx.accuracy import TOP5_MIN_CLASSES, topk_accuracy
from cnnx.backends import remat_compiler_options
from cnnx.config_schema import base_config
from cnnx.data import mixing
from cnnx.errors import ConfigError
from cnnx.parallel.mesh import batch_sharding, replicated
from cnnx.train.distill import distillation_loss
from cnnx.train.losses import LOSSES, threshold_targets
from cnnx.train.optim import at_step, lr_scale
from cnnx.train.state import TrainState


def _split_outputs(out):
    """Models with auxiliary classifiers return (logits, aux_tuple) in train mode."""
    if isinstance(out, tuple):
        return out[0], tuple(out[1])
    return out, ()


# Salt folded into the step key for mixup/cutmix draws (dropout uses the step key itself).
_MIX_SALT = 0x6D6978


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """The static settings of `train_step`, from a config's `train` section.

    No defaults here: they live in the config schema (`cnnx.config_schema.base_config`), and
    `from_config` reads a key a config lacks (an older config.json) from there.

    Attributes:
      loss: a key of `cnnx.train.losses.LOSSES` (`train.loss`): the loss of the logits (and
        of each auxiliary classifier's) against the soft targets.
      label_smoothing: in [0, 1); the targets' smoothing (Szegedy et al. 2016).
      bce_target_threshold: with 'sigmoid_xent', targets (smoothed and mixed) above it become
        1 and the others 0 (`losses.threshold_targets`, timm's); None keeps them soft.
      aux_loss_weight: weight of auxiliary classifiers' losses (GoogLeNet, Inception v3).
      ema_decay: decay of the weights' exponential moving average, or None for no EMA.
      ema_warmup: decay min(ema_decay, (1 + t) / (10 + t)) at step t (TensorFlow's
        `ExponentialMovingAverage(num_updates=t)`).
      mixup_alpha, cutmix_alpha, mix_prob, mix_switch_prob: on-device mixing
        (`cnnx.data.mixing.mix_batch`).
      grad_accum_steps: micro-batches per step (must divide the batch).
      skip_nonfinite: `train.on_nonfinite == 'skip'`: discard a step with a non-finite loss
        or gradient instead of applying it.
      distill, distill_alpha, distill_temperature: knowledge distillation from the teacher
        passed to the step (`cnnx.train.distill.distillation_loss`); 'none' without one.
    """

    loss: str
    label_smoothing: float
    bce_target_threshold: float | None
    aux_loss_weight: float
    ema_decay: float | None
    ema_warmup: bool
    mixup_alpha: float
    cutmix_alpha: float
    mix_prob: float
    mix_switch_prob: float
    grad_accum_steps: int
    skip_nonfinite: bool
    distill: str = "none"
    distill_alpha: float = 0.5
    distill_temperature: float = 1.0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(
                f"--config.train.loss={self.loss!r}: use one of {', '.join(map(repr, LOSSES))}."
            )
        if self.bce_target_threshold is not None and self.loss != "sigmoid_xent":
            raise ConfigError(
                f"--config.train.bce_target_threshold={self.bce_target_threshold} binarises "
                "the targets of the binary cross entropy: set --config.train.loss=sigmoid_xent "
                "or unset it."
            )

    @classmethod
    def from_config(cls, train_cfg) -> "StepOptions":
        """The options of a `train` config section; keys it lacks take the schema's default."""
        schema = base_config().train

        def get(key):
            return train_cfg.get(key, schema[key])

        fields = {f.name: get(f.name) for f in dataclasses.fields(cls) if f.name in schema}
        return cls(**fields, skip_nonfinite=get("on_nonfinite") == "skip")

    @classmethod
    def default(cls, **changes) -> "StepOptions":
        """The schema's default options, with `changes` (field=value) applied."""
        return dataclasses.replace(cls.from_config(base_config().train), **changes)


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
    teacher_variables=None,
    *,
    num_classes: int,
    schedule,
    options: StepOptions,
    teacher=None,
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
      num_classes: label range of the loss.
      schedule: `fn(step) -> learning rate` of the optimizer (logged as `lr`).
      teacher_variables, teacher: with distillation, the frozen teacher's variables and its
        `cnnx.train.distill.Teacher` (its logits of the step's images join the context).
      options: the static settings (see `StepOptions`). `ema_warmup` keeps short runs from keeping
        the random initialisation in the average. The loss (`options.loss`, from
        `cnnx.train.losses.LOSSES`) sees the soft targets (smoothed, and mixed when mixing is on)
        and a context holding the unmixed labels. With `skip_nonfinite`, when the loss or the
        gradient norm is NaN/Inf, the step keeps the old parameters, statistics, optimizer and EMA
        state (the step counter still advances, so data and random numbers stay those of an
        uninterrupted run) and reports `skipped` = 1; a `jnp.where` over the state, selected on
        device with no host round trip. The step counter is the one clock: the schedule
        (`optim.at_step`) and EMA warmup follow it, so the next step applies schedule(step), not the
        rate of the step that was skipped.

    Returns:
      (new state, metrics dict of scalars: loss, top1 and top5 (%, against the unmixed
      labels; top5 only from 6 classes on), lr (the rate this step applied: schedule(step)
      times the plateau multiplier; groups under `train.lr_mult_pattern` apply it times
      lr_mult, frozen ones nothing), grad_norm, and skipped (0/1) with `skip_nonfinite`).
    """
    o = options
    per_example_loss = LOSSES[o.loss]
    if o.distill != "none":
        per_example_loss = distillation_loss(
            per_example_loss, o.distill, o.distill_alpha, o.distill_temperature
        )
    step_rng = jax.random.fold_in(rng, state.step)
    labels = batch["label"]
    images, targets, _ = mixing.mix_batch(
        jax.random.fold_in(step_rng, _MIX_SALT),
        batch["image"],
        labels,
        num_classes,
        mixup_alpha=o.mixup_alpha,
        cutmix_alpha=o.cutmix_alpha,
        prob=o.mix_prob,
        switch_prob=o.mix_switch_prob,
        label_smoothing=o.label_smoothing,
    )
    if o.bce_target_threshold is not None:
        targets = threshold_targets(targets, o.bce_target_threshold)

    def loss_fn(params, batch_stats, images, targets, context, dropout_rng):
        out, updates = state.apply_fn(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_rng},
        )
        logits, aux = _split_outputs(out)
        loss = jnp.mean(per_example_loss(logits, targets, context))
        total = loss
        for a in aux:
            total += o.aux_loss_weight * jnp.mean(per_example_loss(a, targets, context))
        return total, (loss, logits, updates.get("batch_stats", batch_stats))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    context = {"labels": labels}  # per-example inputs of the loss besides logits and targets
    if teacher is not None:
        context["teacher_logits"] = jax.lax.stop_gradient(teacher.logits(teacher_variables, images))
    k = o.grad_accum_steps
    if k == 1:
        (_, (loss, logits, batch_stats)), grads = grad_fn(
            state.params, state.batch_stats, images, targets, context, step_rng
        )
    else:
        if labels.shape[0] % k:
            raise ValueError(f"grad_accum_steps={k} does not divide the batch {labels.shape[0]}")

        def micro(carry, xs):
            stats, grad_sum = carry
            index, imgs, tgts, ctx = xs
            (_, (loss, logits, stats)), g = grad_fn(
                state.params, stats, imgs, tgts, ctx, jax.random.fold_in(step_rng, index)
            )
            return (stats, jax.tree.map(jnp.add, grad_sum, g)), (loss, logits)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        micro_context = jax.tree.map(lambda x: _micro_batches(x, k), context)
        xs = (jnp.arange(k), _micro_batches(images, k), _micro_batches(targets, k), micro_context)
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
    if o.ema_decay is not None and state.ema_params is not None:
        decay = jnp.asarray(o.ema_decay, jnp.float32)
        if o.ema_warmup:
            t = state.step.astype(jnp.float32)
            decay = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
        mix = lambda e, p: decay * e + (1.0 - decay) * p  # noqa: E731
        new = new.replace(
            ema_params=jax.tree.map(mix, state.ema_params, params),
            ema_batch_stats=jax.tree.map(mix, state.ema_batch_stats, batch_stats),
        )
    metrics = {
        "loss": loss,
        "top1": topk_accuracy(logits, labels, 1),
        "lr": schedule(state.step) * lr_scale(state.opt_state),
        "grad_norm": optax.global_norm(grads),
    }
    if num_classes >= TOP5_MIN_CLASSES:  # below, top-5 is 100% whatever the model
        metrics["top5"] = topk_accuracy(logits, labels, 5)
    if o.skip_nonfinite:
        # The global norm is finite iff every gradient is (it is computed anyway).
        ok = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"])
        # The optimizer's own schedule count stays too: `at_step` resets it before each update.
        kept = state.replace(step=new.step)
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, kept)
        metrics["skipped"] = 1.0 - ok.astype(jnp.float32)
    return new, metrics


def make_train_step(
    *,
    num_classes: int,
    schedule,
    mesh,
    state_shardings,
    options: StepOptions,
    remat: bool = False,
    teacher=None,
):
    """`train_step` jitted as the trainer runs it: `step(state, batch, rng) -> (state, metrics)`.

    The batch is sharded over the mesh's ('data', 'fsdp') axes, the state placed by
    `state_shardings` (a pytree of shardings matching the state, e.g. from
    `cnnx.parallel.sharding.shardings_from_config`) and donated (the old state's buffers are
    reused: do not touch it after the call); the key and the metrics are replicated.

    Args:
      num_classes: label range of the loss.
      schedule: the optimizer's learning-rate schedule (for the logged `lr`).
      mesh: the device mesh (`cnnx.parallel.mesh`).
      state_shardings: shardings of the `TrainState`.
      options: `StepOptions.from_config(config.train)`.
      remat: the model rematerialises blocks (`config.model.remat`): compile with the options
        that keep XLA:CPU from undoing it (`cnnx.backends.remat_compiler_options`).
      teacher: the frozen `cnnx.train.distill.Teacher` with `options.distill`; its variables
        are an argument of the compiled step (replicated), not constants in it.

    Returns:
      The jitted function (with a teacher: a function passing the teacher's variables to it,
      with its `.lower`).
    """
    if (options.distill != "none") != (teacher is not None):
        raise ConfigError(
            f"--config.train.distill={options.distill!r} and a teacher go together (set "
            "--config.train.teacher_checkpoint or teacher_torch_weights, or distill='none')."
        )
    step = functools.partial(
        train_step, num_classes=num_classes, schedule=schedule, options=options, teacher=teacher
    )
    shardings = (state_shardings, batch_sharding(mesh), replicated(mesh))
    jitted = jax.jit(
        step,
        in_shardings=shardings + ((replicated(mesh),) if teacher is not None else ()),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=(0,),
        compiler_options=remat_compiler_options() if remat else None,
    )
    if teacher is None:
        return jitted
    variables = jax.device_put(teacher.variables, replicated(mesh))

    @functools.wraps(jitted)
    def with_teacher(state, batch, rng):
        return jitted(state, batch, rng, variables)

    # The loop reads the compiled step's cost analysis through `.lower` (cnnx.train.throughput).
    with_teacher.lower = lambda state, batch, rng: jitted.lower(state, batch, rng, variables)
    return with_teacher
