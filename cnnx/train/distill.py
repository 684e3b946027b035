"""Knowledge distillation (`train.distill`): a frozen teacher beside the student.

The teacher (a cnnx workdir's weights, or torchvision / timm weights converted by
`cnnx.convert`) runs in evaluation mode on the step's (mixed) images; its logits reach the
loss through the step's context ('teacher_logits', see `cnnx.train.losses`), never its
gradient. Two losses, each `(1 - alpha) · label loss + alpha · distillation term`:

  soft  Hinton, Vinyals & Dean 2015: T² · KL(softmax(teacher / T) ‖ softmax(student / T));
        the T² keeps the term's gradient scale independent of the temperature. Summed over
        classes per example (Hinton's); DeiT's soft variant also divides by the class count.
  hard  Touvron et al. 2021 (DeiT, "hard-label distillation"): softmax cross entropy against
        the teacher's argmax (DeiT weighs 1/2 and 1/2: alpha = 0.5).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from cnnx.errors import ConfigError

KINDS = ("none", "soft", "hard")


def soft_term(logits, teacher_logits, temperature: float):
    """T² · KL(softmax(teacher / T) ‖ softmax(student / T)) per example, float32 (B,)."""
    t = temperature
    student = jax.nn.log_softmax(logits.astype(jnp.float32) / t)
    teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t)
    return t * t * jnp.sum(jnp.exp(teacher) * (teacher - student), axis=-1)


def hard_term(logits, teacher_logits):
    """Softmax cross entropy against the teacher's argmax per example, float32 (B,)."""
    labels = jnp.argmax(teacher_logits, axis=-1)
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def distillation_loss(label_loss: Callable, kind: str, alpha: float, temperature: float):
    """The train step's loss with distillation: `fn(logits, targets, context) -> (B,)`.

    Args:
      label_loss: the loss of `train.loss` (against the smoothed, mixed targets).
      kind: 'soft' or 'hard'.
      alpha: weight of the distillation term, in [0, 1].
      temperature: T of the soft term (> 0).

    Returns:
      (1 - alpha) · label_loss + alpha · term, reading context['teacher_logits'].
    """

    def loss(logits, targets, context):
        teacher = jax.lax.stop_gradient(context["teacher_logits"])
        if kind == "soft":
            term = soft_term(logits, teacher, temperature)
        else:
            term = hard_term(logits, teacher)
        return (1.0 - alpha) * label_loss(logits, targets, context) + alpha * term

    return loss


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A frozen model: its registry name, `apply` and variables."""

    name: str
    apply_fn: Callable
    variables: dict

    def logits(self, variables, images):
        """The teacher's logits of a batch, in evaluation mode (BatchNorm's averages)."""
        return self.apply_fn(variables, images, train=False)


def load_teacher(config, num_classes: int) -> Teacher | None:
    """The teacher of `config.train`, or None when distillation is off (`train.distill`).

    `train.teacher_checkpoint` is a cnnx workdir (its config.json names the model);
    `train.teacher_torch_weights` a torchvision / timm weights file of `train.teacher_model`.
    The teacher is built for `num_classes` classes, the student's (its weights must fit).

    Raises:
      ConfigError: distillation on without a teacher, with both sources, or no model name.
    """
    d = config.train
    kind = d.get("distill", "none")
    if kind == "none":
        return None
    if kind not in KINDS:
        raise ConfigError(f"--config.train.distill={kind!r}: use one of {', '.join(KINDS)}.")
    if bool(d.teacher_checkpoint) == bool(d.teacher_torch_weights):
        raise ConfigError(
            f"--config.train.distill={kind!r} needs one teacher: set exactly one of "
            "--config.train.teacher_checkpoint (a cnnx workdir) and "
            "--config.train.teacher_torch_weights (with --config.train.teacher_model)."
        )
    from cnnx import models
    from cnnx.train import finetune, workdir

    name = d.teacher_model
    if d.teacher_checkpoint and not name:
        saved = workdir.load_saved_config(d.teacher_checkpoint.rstrip("/")) or {}
        name = (saved.get("model") or {}).get("name")
    if not name:
        raise ConfigError(
            "Set --config.train.teacher_model to the teacher's registry name (e.g. resnet50)."
        )
    source = dataclasses.replace(
        _InitLike(), checkpoint=d.teacher_checkpoint, torch_weights=d.teacher_torch_weights
    )
    variables = finetune.load_source_variables(source, name)
    model = models.create(name, num_classes=num_classes)
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    return Teacher(name=name, apply_fn=model.apply, variables=variables)


@dataclasses.dataclass(frozen=True)
class _InitLike:
    """The fields of the `init` section that `finetune.load_source_variables` reads."""

    checkpoint: str | None = None
    torch_weights: str | None = None
    step: int | None = None
    ema: bool = False
