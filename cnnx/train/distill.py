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
import numpy as np
import optax
from flax import traverse_util

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


def load_teacher(config, num_classes: int, image_shape: tuple[int, int, int]) -> Teacher | None:
    """The teacher of `config.train`, or None when distillation is off (`train.distill`).

    `train.teacher_checkpoint` is a cnnx workdir (its config.json names the model);
    `train.teacher_torch_weights` a torchvision / timm weights file of `train.teacher_model`.
    The teacher must predict the student's classes and take the student's batches; both are
    checked here, before the first step.

    Args:
      config: the run's config.
      num_classes: the student's class count.
      image_shape: (height, width, channels) of the student's training batches.

    Raises:
      ConfigError: distillation on without a teacher, with both sources, no model name; a
        teacher with another class count, one that cannot take (height, width, channels), or
        one trained on inputs normalised otherwise (`normalization_problem`).
    """
    d = config.train
    if d.get("distill", "none") == "none":
        return None
    from cnnx import convert
    from cnnx.train import checkpoint, finetune

    name, options = teacher_options(config)
    if (problem := normalization_problem(config, name)) is not None:
        raise ConfigError(problem)
    if d.teacher_checkpoint:
        source = f"--config.train.teacher_checkpoint={d.teacher_checkpoint}"
        variables = checkpoint.load_variables(d.teacher_checkpoint, None)
        classes = head_classes(name, variables, options)
    else:
        source = f"--config.train.teacher_torch_weights={d.teacher_torch_weights}"
        state_dict = finetune.read_torch_state_dict(d.teacher_torch_weights)
        classes = torch_head_classes(state_dict)
        if classes == num_classes:
            variables = convert.from_torch(name, state_dict, num_classes=classes)
    if classes != num_classes:
        raise ConfigError(
            f"{source}: the teacher ({name}) predicts {classes} classes, the student "
            f"{num_classes}; distil from a teacher trained on the student's data."
        )
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    model = _create(name, options, num_classes)
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    try:
        jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    except Exception as e:  # flax's shape errors: a kernel that cannot take these inputs
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(" (https://")[0]  # flax's link to its error catalogue
        h, w, c = image_shape
        raise ConfigError(
            f"{source}: the teacher ({name}) cannot take the student's {h}x{w} images with "
            f"{c} channel(s) ({first}); distil from a teacher trained on inputs like these."
        ) from e
    return Teacher(name=name, apply_fn=model.apply, variables=variables)


def teacher_name(config) -> str:
    """The teacher's registry name: `train.teacher_model`, else its workdir's config.json.

    Raises:
      ConfigError: neither names one.
    """
    return teacher_options(config)[0]


def teacher_options(config) -> tuple[str, dict]:
    """The teacher's registry name and constructor options (`num_classes` aside).

    A workdir's teacher is built as its run built it: the `model` section of its config.json
    (width, depth, dtype...; `cnnx.train.experiment.model_kwargs`), unless
    `train.teacher_model` names another model. Torch weights' teacher, or a workdir without
    config.json: `train.teacher_model` with the registry's defaults.

    Raises:
      ConfigError: an unknown `train.distill`, none or both teacher sources, no model name;
        an option the saved config holds that the model refuses.
    """
    import ml_collections

    from cnnx.train import experiment, workdir

    d = config.train
    kind = d.get("distill", "none")
    if kind not in KINDS:
        raise ConfigError(f"--config.train.distill={kind!r}: use one of {', '.join(KINDS)}.")
    if bool(d.teacher_checkpoint) == bool(d.teacher_torch_weights):
        raise ConfigError(
            f"--config.train.distill={kind!r} needs one teacher: set exactly one of "
            "--config.train.teacher_checkpoint (a cnnx workdir) and "
            "--config.train.teacher_torch_weights (with --config.train.teacher_model)."
        )
    name, saved = d.teacher_model, {}
    if d.teacher_checkpoint:
        saved = (workdir.load_saved_config(d.teacher_checkpoint.rstrip("/")) or {}).get("model")
        saved = saved or {}
        name = name or saved.get("name")
    if not name:
        raise ConfigError(
            "Set --config.train.teacher_model to the teacher's registry name (e.g. resnet50)."
        )
    if saved.get("name") != name:
        return name, {}
    model = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    options = experiment.model_kwargs(ml_collections.ConfigDict({"model": model}), 0)
    options.pop("num_classes")
    return name, options


def normalization_problem(config, name: str) -> str | None:
    """Why the teacher expects inputs normalised otherwise than the student's `data.mean` /
    `data.std`; None when they agree or the teacher's are unknown.

    The teacher sees the student's normalised batches; fed inputs normalised another way it
    gives confident logits of shifted features. A workdir's teacher expects its run's mean /
    std (config.json); torch weights their reference's (`cnnx.convert.input_normalization`,
    either `transform_input` setting). Only normalisations of the same channel count compare.
    """
    import contextlib

    from cnnx import convert
    from cnnx.train import workdir

    d = config.train
    if d.teacher_checkpoint:
        path = d.teacher_checkpoint.rstrip("/")
        data = (workdir.load_saved_config(path) or {}).get("data") or {}
        if "mean" not in data or "std" not in data:
            return None
        expected = [(tuple(data["mean"]), tuple(data["std"]), f"as its run in {path} was trained")]
        source = f"--config.train.teacher_checkpoint={d.teacher_checkpoint}"
    else:
        expected = [convert.input_normalization(name)]
        with contextlib.suppress(convert.ConversionError):  # the other transform_input
            expected.append(convert.input_normalization(name, transform_input=False))
        source = f"--config.train.teacher_torch_weights={d.teacher_torch_weights}"
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    comparable = [e for e in expected if len(e[0]) == len(mean) and len(e[1]) == len(std)]
    if not comparable or any(
        np.allclose(mean, m, atol=1e-6) and np.allclose(std, s, atol=1e-6) for m, s, _ in comparable
    ):
        return None
    want_mean, want_std, why = comparable[0]
    return (
        f"{source}: the teacher ({name}) expects inputs normalised with mean {list(want_mean)} "
        f"and std {list(want_std)} ({why}), but the student's config normalises with mean "
        f"{list(mean)} and std {list(std)}: it would judge other inputs than it learned. Pass "
        f"--config.data.mean='{tuple(float(v) for v in want_mean)}' "
        f"--config.data.std='{tuple(float(v) for v in want_std)}', or distil from a teacher "
        "trained like the student."
    )


def teacher_module(config, num_classes: int):
    """The teacher's Flax module (`teacher_options`) for `num_classes` classes."""
    return _create(*teacher_options(config), num_classes)


def _create(name: str, options: dict, num_classes: int):
    """Model `name` with constructor `options` and `num_classes` classes."""
    from cnnx import models

    return models.create(name, **{**options, "num_classes": num_classes})


def head_classes(name: str, variables: dict, options: dict | None = None) -> int:
    """The class count of model `name`'s variables: the size, in `variables`, of the axis
    that changes with `num_classes` in the model's own (abstract) variables (built with
    constructor `options`)."""
    from cnnx import models

    def shapes(n):
        model = _create(name, options or {}, n)
        spec = models.get_spec(name)
        r = max(spec.test_resolution, spec.min_resolution)
        x = jax.ShapeDtypeStruct((1, r, r, spec.in_chans), jnp.float32)
        tree = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
        return {k: v.shape for k, v in traverse_util.flatten_dict(tree["params"]).items()}

    a, b = shapes(7), shapes(8)
    loaded = traverse_util.flatten_dict(variables["params"])
    for key, shape in a.items():
        if shape != b[key] and key in loaded:
            axis = next(i for i, (m, n) in enumerate(zip(shape, b[key])) if m != n)
            return int(np.shape(loaded[key])[axis])
    raise ConfigError(f"The teacher's variables do not hold {name}'s classifier.")


def torch_head_classes(state_dict) -> int:
    """The class count of a torchvision / timm state dict: the output size of its last
    weight (modules register the classifier last: `fc`, `classifier`, `head`)."""
    weights = [k for k in state_dict if k.endswith("weight") and len(np.shape(state_dict[k])) > 1]
    if not weights:
        raise ConfigError("The teacher's torch weights hold no classifier weight.")
    return int(np.shape(state_dict[weights[-1]])[0])
