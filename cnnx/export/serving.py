"""A serving artefact: `jax.export` of a run's inference with its preprocessing folded in.

The artefact is one file of serialized StableHLO (`jax.export.Exported.serialize()`) whose
function takes uint8 images `(batch, H, W, C)` (batch symbolic: any size; H, W fixed at
export, default: the size evaluation resizes to before its centre crop) and returns float32
logits `(batch, num_classes)`. Inside it: evaluation's preprocessing as the run's
`data.eval_pp` says (`resize` / `resize_crop` at its crop ratio, then `normalize` with its
mean / std), then the model. The variables are baked in as constants, so the file is
self-contained (its size is about the model's float32 size; jax.export's limit is 2 GiB),
and is lowered for several platforms at once (default cpu, cuda and tpu: lowering needs no
hardware), so a model exported on a laptop serves on a GPU. Serving needs only jax:

    import jax
    import numpy as np

    with open("model.jax", "rb") as f:
        serving = jax.export.deserialize(bytearray(f.read()))
    images = np.zeros((8, 256, 256, 3), np.uint8)  # uint8 RGB, (batch, H, W, C) as exported
    logits = serving.call(images)  # (8, num_classes) float32, on jax's default device
    print(np.asarray(logits).argmax(-1))

Exactness: the resize is `jax.image.resize` (bilinear, antialiased), the algorithm of
TensorFlow's `tf.image.resize(antialias=True)` that evaluation uses; the two agree to float32
rounding (under 1e-2 of a grey level measured), and the resized size and crop offsets
are computed as evaluation computes them (float32, round half to even). The convolutions
and layers are traced as plain `lax` operations (no oneDNN call, no CPU-specific
formulation), so logits equal evaluation's within the conversion parity bound (relative
error < 1e-4).
"""

import jax
import jax.numpy as jnp
import numpy as np

from cnnx import backends
from cnnx.errors import ConfigError
from cnnx.export.run import TrainedRun, write_export

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
SERVED_OPS = ("decode", "resize", "resize_crop", "normalize")


def _ops(pp: str) -> list[tuple[str, dict]]:
    """The (name, kwargs) ops of an eval pp string, each one that the export folds in.

    Raises:
      ConfigError: an op that is not registered, or one without a serving form.
    """
    from cnnx.data.pp import parse  # the pp-string syntax's one home (imports TensorFlow)

    ops = parse(pp)
    for name, _ in ops:
        if name not in SERVED_OPS:
            raise ConfigError(
                f"eval_pp op {name!r} ({pp!r}) has no serving form; the export folds in "
                f"{', '.join(SERVED_OPS)}."
            )
    return ops


def shorter_side_size(height: int, width: int, size: int, crop_pct: float) -> tuple[int, int]:
    """(height, width) after evaluation's `resize_crop` resize: the shorter side to
    ceil(size / crop_pct), the other in proportion, each at least `size`; in float32 with
    round half to even, as `cnnx.data.preprocess` computes it in TensorFlow."""
    short = np.ceil(np.float32(size / crop_pct))
    scale = short / np.minimum(np.float32(height), np.float32(width))
    new = np.round(np.array([height, width], np.float32) * scale).astype(np.int32)
    return int(max(new[0], size)), int(max(new[1], size))


def default_input_size(run: TrainedRun) -> tuple[int, int]:
    """The input size whose resize is the identity: evaluation's pre-crop size (square)."""
    size = run.eval_image_size
    for name, kwargs in _ops(run.eval_pp):
        if name == "resize_crop":
            return shorter_side_size(size, size, size, kwargs.get("crop_pct") or run.crop_pct)
    return size, size


def _resize(x, height: int, width: int):
    if x.shape[1:3] == (height, width):
        return x  # the antialiased resize to the same size is the identity
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "linear", antialias=True)


def preprocess_fn(run: TrainedRun):
    """Evaluation's preprocessing on a uint8 batch (B, H, W, C) -> float32 (B, S, S, C)."""
    ops = _ops(run.eval_pp)
    size = run.eval_image_size

    def preprocess(images):
        x = images.astype(jnp.float32)
        for name, kwargs in ops:
            if name == "resize":
                x = _resize(x, size, size)
            elif name == "resize_crop":
                pct = kwargs.get("crop_pct") or run.crop_pct
                h, w = shorter_side_size(x.shape[1], x.shape[2], size, pct)
                x = _resize(x, h, w)
                top, left = (h - size) // 2, (w - size) // 2
                x = x[:, top : top + size, left : left + size]
            elif name == "normalize":
                mean = np.asarray(run.mean, np.float32)
                std = np.asarray(run.std, np.float32)
                x = (x / 255.0 - mean) / std
        return x

    return preprocess


def serving_fn(run: TrainedRun):
    """uint8 images (B, H, W, C) -> float32 logits (B, num_classes), variables as constants."""
    model, variables, preprocess = run.model(), run.variables, preprocess_fn(run)

    def serve(images):
        logits = model.apply(variables, preprocess(images), train=False)
        return logits.astype(jnp.float32)

    return serve


def export_serving(
    run: TrainedRun,
    *,
    input_size: tuple[int, int] | None = None,
    platforms=DEFAULT_PLATFORMS,
) -> jax.export.Exported:
    """`jax.export` of the run's inference on uint8 images of a symbolic batch size.

    Args:
      run: the checkpoint (`cnnx.export.run.load_run`).
      input_size: (H, W) of the images served (default: `default_input_size`).
      platforms: what to lower for (subset of `PLATFORMS`; no hardware needed).

    Returns:
      The `jax.export.Exported` (`.serialize()` gives the artefact's bytes).

    Raises:
      ConfigError: an unknown platform, a bad input size, or an eval_pp op with no serving
        form (only decode, resize, resize_crop and normalize have one).
    """
    unknown = sorted(set(platforms) - set(PLATFORMS))
    if unknown or not platforms:
        raise ConfigError(f"--platforms={','.join(platforms)}: choose from {', '.join(PLATFORMS)}.")
    height, width = input_size or default_input_size(run)
    if min(height, width) < 1:
        raise ConfigError(f"--input_size={height},{width}: sides must be at least 1 pixel.")
    (batch,) = jax.export.symbolic_shape("batch")
    images = jax.ShapeDtypeStruct((batch, height, width, run.channels), jnp.uint8)
    with backends.portable_only():
        return jax.export.export(jax.jit(serving_fn(run)), platforms=tuple(platforms))(images)


def write_serving(exported: jax.export.Exported, run: TrainedRun, output: str) -> dict:
    """Writes the artefact to `output` and its description to `<output>.json`.

    Returns:
      The description (input / output shapes, platforms, preprocessing, model).
    """
    _, height, width, channels = exported.in_avals[0].shape
    description = {
        "model": run.name,
        "input": {"shape": ["batch", height, width, channels], "dtype": "uint8"},
        "output": {"shape": ["batch", run.options["num_classes"]], "dtype": "float32"},
        "platforms": list(exported.platforms),
        "preprocessing": run.preprocessing(),
        "step": run.step,
        "ema": run.ema,
        "jax": jax.__version__,
        "calling_convention_version": exported.calling_convention_version,
    }
    write_export(output, bytes(exported.serialize()), description)
    return description
