"""The preprocessing-op registry: `op`, the op tables, `parse`, `build`, `build_batched` and
`PPContext`.

A pp string such as `"inception_crop|flip|normalize"` lists op names, optionally with keyword
arguments: `"inception_crop(scale=(0.25, 1))|flip"`. Each op is a function
`fn(ctx, **kwargs) -> (features -> features)` registered with `@op(name)`; ops read the
target size, crop ratio and normalisation constants from a `PPContext`, so changing the
model's resolution (compound scaling, FixRes) never means editing preprocessing strings.

An op may also register a batched form with `@op(name, batched=True)`: the same
transformation in NumPy on a batch of equally sized images (`image` (B, H, W, C), `seed`
(B, 2)), giving exactly the per-example results (same random draws, same arithmetic, bit for
bit) without TensorFlow. The in-memory pipelines apply a pp string that way when every op of
it has one (`build_batched`).

Randomness is stateless: each example carries a `seed` (shape (2,), int64) derived from the
run seed, the epoch and the example's index, and each op folds in its own constant
(`op_seed`). The same example in the same epoch is therefore augmented identically on resume,
on any host.

The op modules register their ops when imported, and the registry imports them by name when
its tables are first needed (as big_vision's pp builder does): `cnnx.data.batched_ops` (NumPy)
for the batched forms; `cnnx.data.preprocess` (basic ops), `cnnx.data.augment` (training
augmentations) and `cnnx.evaluate.views` (test-time views), which need TensorFlow, for the
per-example forms, only when a pp string names an op without a batched form or `build` runs.
The helpers those ops share (`decode`, `resize`, `op_seed`) import TensorFlow when called.
"""

import ast
import dataclasses
import importlib
import re
from collections.abc import Callable

from cnnx.errors import ConfigError
from cnnx.image_stats import IMAGENET_MEAN, IMAGENET_STD


@dataclasses.dataclass(frozen=True)
class PPContext:
    """What ops need to know about the run.

    Attributes:
      image_size: side S of the square images the model takes, in pixels.
      crop_pct: evaluation centre-crop ratio (S / shorter side before the crop).
      mean, std: per-channel normalisation constants on the [0, 1] scale (one value applies
        to every channel).
      channels: the model's input channels (1: grey, 3: RGB).
    """

    image_size: int
    crop_pct: float = 0.875
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3


# name -> fn(ctx, **kwargs) -> (features -> features), one example at a time.
OPS: dict[str, Callable] = {}
# name -> the same op on NumPy batches (see the module docstring); every such name has a
# per-example form in OPS (once the modules of those are loaded).
BATCHED_OPS: dict[str, Callable] = {}
# Ops whose batched form starts by resizing the whole image to image_size × image_size: a
# resize that is the identity on images of that size (and skipped), so in-memory images can
# be resized once, ahead of training, instead of at every batch (`resizes_first`).
RESIZING_FIRST: set[str] = set()

# The modules that register ops, imported by name on first need (see the module docstring).
BATCHED_OP_MODULES = ("cnnx.data.batched_ops",)
TF_OP_MODULES = ("cnnx.data.preprocess", "cnnx.data.augment", "cnnx.evaluate.views")


def op(name: str, *, batched: bool = False, resizes_first: bool = False):
    """Registers `fn(ctx, **kwargs) -> (features -> features)` under `name`.

    With `batched=True` it registers the batched form of the op `name` (which must also have
    a per-example form): its features hold a batch of equally sized images. `resizes_first`:
    that form starts by resizing the whole image to image_size × image_size, the identity on
    images of that size (see `RESIZING_FIRST`).
    """

    def wrap(fn):
        (BATCHED_OPS if batched else OPS)[name] = fn
        if resizes_first:
            RESIZING_FIRST.add(name)
        return fn

    return wrap


def _has_tensorflow() -> bool:
    # Through import_tensorflow, which keeps TensorFlow off the accelerators.
    from cnnx.errors import MissingDependency
    from cnnx.process_defaults import import_tensorflow

    try:
        import_tensorflow("preprocessing ops")
    except MissingDependency:
        return False
    return True


def load_ops(per_example: bool = True) -> bool:
    """Imports the modules that register ops: those of the batched forms, and with
    `per_example` those of the tf.data ops (TensorFlow, then, is imported).

    Returns:
      Whether the requested ops are registered: False when `per_example` ops were asked for
      and TensorFlow is not installed.
    """
    for module in BATCHED_OP_MODULES:
        importlib.import_module(module)
    if not per_example:
        return True
    if not _has_tensorflow():
        return False
    for module in TF_OP_MODULES:
        importlib.import_module(module)
    return True


def _unknown(name: str, pp: str) -> ConfigError:
    if load_ops():
        known = ", ".join(sorted(OPS))
        return ConfigError(f"Unknown preprocessing op {name!r} in {pp!r}; known ops: {known}.")
    return ConfigError(
        f"Preprocessing op {name!r} in {pp!r} is not one of the ops that run without "
        f"TensorFlow ({', '.join(sorted(BATCHED_OPS))}); the others run in tf.data, and "
        "TensorFlow cannot be imported here: pip install tensorflow-cpu."
    )


def parse(pp: str) -> list[tuple[str, dict]]:
    """`"a|b(x=1)"` -> [('a', {}), ('b', {'x': 1})].

    Names with a batched form are known without TensorFlow; any other name loads the
    per-example ops (TensorFlow).

    Raises:
      ConfigError: an unknown op (naming the known ones; without TensorFlow, naming the ops
        that run without it and what to install) or arguments that are not Python literals.
    """
    load_ops(per_example=False)
    ops = []
    for part in filter(None, (p.strip() for p in pp.split("|"))):
        name, _, rest = part.partition("(")
        name = name.strip()
        if name not in BATCHED_OPS and name not in OPS and not (load_ops() and name in OPS):
            raise _unknown(name, pp)
        kwargs = {}
        if rest:
            try:
                call = ast.parse(f"f({rest}", mode="eval").body
                kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            except (SyntaxError, ValueError) as e:
                raise ConfigError(f"Cannot parse arguments of op {part!r}: {e}") from None
        ops.append((name, kwargs))
    return ops


def _compose(pp: str, ctx: PPContext, table: dict[str, Callable]) -> Callable[[dict], dict]:
    fns = []
    for name, kwargs in parse(pp):
        try:
            fns.append(table[name](ctx, **kwargs))
        except TypeError as e:
            raise ConfigError(f"Bad arguments for preprocessing op {name!r}: {e}") from None

    def apply(features):
        for fn in fns:
            features = fn(features)
        return features

    return apply


def build(pp: str, ctx: PPContext) -> Callable[[dict], dict]:
    """The composed preprocessing function of a pp string, on one example's features
    (TensorFlow tensors, inside tf.data).

    Raises:
      ConfigError: see `parse`, arguments an op does not take, or TensorFlow is not installed.
    """
    if not load_ops():
        raise ConfigError(
            f"Preprocessing {pp!r} one example at a time runs in tf.data, and TensorFlow cannot "
            "be imported here: pip install tensorflow-cpu."
        )
    return _compose(pp, ctx, OPS)


def has_batched(pp: str) -> bool:
    """Whether every op of `pp` has a batched form (see `build_batched`).

    Raises:
      ConfigError: see `parse`.
    """
    return all(name in BATCHED_OPS for name, _ in parse(pp))


def resizes_first(pp: str) -> bool:
    """Whether the batched form of `pp` starts by resizing every image to the target size,
    so that resizing in-memory images once ahead gives exactly the same results."""
    ops = parse(pp)
    return bool(ops) and ops[0][0] in RESIZING_FIRST


def build_batched(pp: str, ctx: PPContext) -> Callable[[dict], dict]:
    """`build`'s function on batches, in NumPy: features with `image` (B, H, W, C) of one
    size and `seed` (B, 2); each example gets exactly what `build(pp, ctx)` would give it.

    Raises:
      ConfigError: see `build`, or an op without a batched form (check `has_batched`).
    """
    missing = [name for name, _ in parse(pp) if name not in BATCHED_OPS]
    if missing:
        raise ConfigError(f"Preprocessing op(s) {', '.join(missing)} have no batched form.")
    return _compose(pp, ctx, BATCHED_OPS)


def check_image_shape(dims, ctx: PPContext, pp: str, key: str, views: bool) -> None:
    """The preprocessed images must be what the model was built for: S x S x C (or V views of
    them at evaluation), known when the pipeline is built, before anything compiles.

    Args:
      dims: the shape of one example's preprocessed image (None where unknown), or None for an
        unknown rank.
      key: the config key of `pp` (`train_pp`, `eval_pp`), for the message.
      views: whether test-time views (V, S, S, C) are allowed.

    Raises:
      ConfigError: naming `pp` and the shape it gives.
    """
    want = [ctx.image_size, ctx.image_size, ctx.channels]
    dims = None if dims is None else list(dims)
    if dims is None or len(dims) not in ((3, 4) if views else (3,)) or dims[-3:] != want:
        shown = "unknown" if dims is None else f"({', '.join(str(d) for d in dims)})"
        raise ConfigError(
            f"--config.data.{key}={pp!r} gives images of shape {shown}, but the model takes "
            f"{ctx.image_size}x{ctx.image_size}x{ctx.channels}: include an op that sets the size "
            "(resize, resize_crop, random_crop, inception_crop)."
        )


def cannot_apply(pp: str, key: str, error: Exception) -> ConfigError:
    """The error for a pp string that cannot be applied to the data (a negative padding, a
    zero crop ratio...): the last line of what the ops raised, naming the config key."""
    lines = [x.strip() for x in str(error).strip().splitlines() if x.strip()]
    detail = lines[-1][:300] if lines else ""
    if not re.match(r"\w+(Error|Exception)\b", detail):
        detail = f"{type(error).__name__}: {detail}"
    return ConfigError(f"--config.data.{key}={pp!r} cannot be applied to this data: {detail}")


# --- Shared by the per-example (tf.data) ops; TensorFlow is imported when they are called. ---


def op_seed(features: dict, salt: int):
    """The example's stateless seed (shape (2,), int64) folded with an op's own constant."""
    import tensorflow as tf

    return tf.random.experimental.stateless_fold_in(features["seed"], salt)


def _decode_channels(channels: int) -> int:
    """The channel count to ask the decoder for: 3 for grey and RGB models, since some valid
    files cannot be decoded straight to one channel (CMYK JPEG, GIF, BMP)."""
    return 3 if channels in (1, 3) else channels


def _to_channels(image, channels: int):
    """A decoded image (3 channels for grey and RGB models) with the model's channel count."""
    import tensorflow as tf

    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)  # ITU-R 601 luma, as PIL's convert("L")
    image.set_shape([None, None, channels])
    return image


def decode(image, channels: int):
    """Decodes encoded bytes (JPEG/PNG/GIF/BMP) or passes a uint8 (H, W, C) tensor through.

    Files are decoded to three channels and then converted, so a one-channel model reads any
    valid file (CMYK JPEGs, GIFs and BMPs cannot be decoded to one channel directly).

    Args:
      image: a scalar string tensor (the file's bytes) or an (H, W, C) image.
      channels: the model's channel count.

    Returns:
      (H, W, channels) uint8 for encoded input; other input unchanged.
    """
    import tensorflow as tf

    if image.dtype == tf.string:
        image = tf.io.decode_image(
            image, channels=_decode_channels(channels), expand_animations=False
        )
        image = _to_channels(image, channels)
    return image


def decode_crop(image, begin, size, channels: int):
    """The window `begin` (y, x, 0), `size` (h, w, -1) of an encoded image; a JPEG is decoded
    only inside the window (`tf.image.decode_and_crop_jpeg`), other formats whole.

    Returns:
      (h, w, channels) uint8.
    """
    import tensorflow as tf

    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    crop = tf.cond(
        tf.image.is_jpeg(image),
        lambda: _to_channels(
            tf.image.decode_and_crop_jpeg(image, window, channels=_decode_channels(channels)),
            channels,
        ),
        lambda: tf.slice(decode(image, channels), begin, size),
    )
    crop.set_shape([None, None, channels])
    return crop


def resize(image, size):
    """Bilinear resize with antialiasing (as PIL) to `size` (height, width), as float32.

    Takes one (H, W, C) image or a batch (B, H, W, C); the values stay on their scale (0-255).
    """
    import tensorflow as tf

    return tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
