"""The preprocessing-op registry: `op`, the op table, `parse`, `build` and `PPContext`.

A pp string such as `"inception_crop|flip|normalize"` lists op names, optionally with keyword
arguments: `"inception_crop(scale=(0.25, 1))|flip"`. Each op is a function
`fn(ctx, **kwargs) -> (features -> features)` registered with `@op(name)`; ops read the
target size, crop ratio and normalisation constants from a `PPContext`, so changing the
model's resolution (compound scaling, FixRes) never means editing preprocessing strings.

An op may also register a batched form with `@op(name, batched=True)`: the same
transformation on a batch of equally sized images (`image` (B, H, W, C), `seed` (B, 2)),
giving exactly the per-example results (same random draws, same arithmetic). The training
and evaluation pipelines apply a pp string after `batch` when every op of it has one and the
images live in memory (`build_batched`), which removes tf.data's per-example cost.

Randomness is stateless: each example carries a `seed` (shape (2,), int64) derived from the
run seed, the epoch and the example's index, and each op folds in its own constant
(`op_seed`). The same example in the same epoch is therefore augmented identically on resume,
on any host.

The ops themselves live in `cnnx.data.preprocess` (basic ops), `cnnx.data.augment`
(training augmentations) and `cnnx.evaluate.views` (test-time views); importing `cnnx.data`
registers the first two (the layout of big_vision's `pp/registry.py` and `pp/builder.py`).
"""

import ast
import dataclasses
from collections.abc import Callable

import tensorflow as tf

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
# name -> the same op on batches (see the module docstring); a subset of OPS.
BATCHED_OPS: dict[str, Callable] = {}
# Ops whose batched form starts by resizing the whole image to image_size × image_size: a
# resize that is the identity on images of that size (and skipped), so in-memory images can
# be resized once, ahead of training, instead of at every batch (`resizes_first`).
RESIZING_FIRST: set[str] = set()


def op(name: str, *, batched: bool = False, resizes_first: bool = False):
    """Registers `fn(ctx, **kwargs) -> (features -> features)` under `name`.

    With `batched=True` it registers the batched form of the op `name` (which must also have
    a per-example form): its features hold a batch of equally sized images. `resizes_first`:
    that form starts with `resize_batch_to(image, image_size)` (see `RESIZING_FIRST`).
    """

    def wrap(fn):
        (BATCHED_OPS if batched else OPS)[name] = fn
        if resizes_first:
            RESIZING_FIRST.add(name)
        return fn

    return wrap


def op_seed(features: dict, salt: int) -> tf.Tensor:
    """The example's stateless seed (shape (2,), int64) folded with an op's own constant."""
    return tf.random.experimental.stateless_fold_in(features["seed"], salt)


def _decode_channels(channels: int) -> int:
    """The channel count to ask the decoder for: 3 for grey and RGB models, since some valid
    files cannot be decoded straight to one channel (CMYK JPEG, GIF, BMP)."""
    return 3 if channels in (1, 3) else channels


def _to_channels(image, channels: int):
    """A decoded image (3 channels for grey and RGB models) with the model's channel count."""
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)  # ITU-R 601 luma, as PIL's convert("L")
    image.set_shape([None, None, channels])
    return image


def decode(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Decodes encoded bytes (JPEG/PNG/GIF/BMP) or passes a uint8 (H, W, C) tensor through.

    Files are decoded to three channels and then converted, so a one-channel model reads any
    valid file (CMYK JPEGs, GIFs and BMPs cannot be decoded to one channel directly).

    Args:
      image: a scalar string tensor (the file's bytes) or an (H, W, C) image.
      channels: the model's channel count.

    Returns:
      (H, W, channels) uint8 for encoded input; other input unchanged.
    """
    if image.dtype == tf.string:
        image = tf.io.decode_image(
            image, channels=_decode_channels(channels), expand_animations=False
        )
        image = _to_channels(image, channels)
    return image


def decode_crop(image: tf.Tensor, begin: tf.Tensor, size: tf.Tensor, channels: int) -> tf.Tensor:
    """The window `begin` (y, x, 0), `size` (h, w, -1) of an encoded image; a JPEG is decoded
    only inside the window (`tf.image.decode_and_crop_jpeg`), other formats whole.

    Returns:
      (h, w, channels) uint8.
    """
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


def resize(image: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize with antialiasing (as PIL) to `size` (height, width), as float32.

    Takes one (H, W, C) image or a batch (B, H, W, C); the values stay on their scale (0-255).
    """
    return tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)


def resize_batch_to(images: tf.Tensor, size: int) -> tf.Tensor:
    """`resize` of a batch (B, H, W, C) to size × size, skipped when the images already have
    that size (where the antialiased bilinear resize is exactly the identity: each output
    pixel centre falls on an input pixel centre, with weight 1)."""
    if images.shape[1] == size and images.shape[2] == size:
        return tf.cast(images, tf.float32)
    return resize(images, [size, size])


def parse(pp: str) -> list[tuple[str, dict]]:
    """`"a|b(x=1)"` -> [('a', {}), ('b', {'x': 1})].

    Raises:
      ConfigError: an unknown op (naming the known ones) or arguments that are not Python
        literals.
    """
    ops = []
    for part in filter(None, (p.strip() for p in pp.split("|"))):
        name, _, rest = part.partition("(")
        name = name.strip()
        if name not in OPS:
            raise ConfigError(
                f"Unknown preprocessing op {name!r} in {pp!r}; known ops: {', '.join(sorted(OPS))}."
            )
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
    """The composed preprocessing function of a pp string, on one example's features.

    Raises:
      ConfigError: see `parse`, or arguments an op does not take.
    """
    return _compose(pp, ctx, OPS)


def has_batched(pp: str) -> bool:
    """Whether every op of `pp` has a batched form (see `build_batched`)."""
    return all(name in BATCHED_OPS for name, _ in parse(pp))


def resizes_first(pp: str) -> bool:
    """Whether the batched form of `pp` starts by resizing every image to the target size,
    so that resizing in-memory images once ahead gives exactly the same results."""
    ops = parse(pp)
    return bool(ops) and ops[0][0] in RESIZING_FIRST


def build_batched(pp: str, ctx: PPContext) -> Callable[[dict], dict]:
    """`build`'s function on batches: features with `image` (B, H, W, C) of one size and
    `seed` (B, 2); each example gets exactly what `build(pp, ctx)` would give it.

    Raises:
      ConfigError: see `build`, or an op without a batched form (check `has_batched`).
    """
    missing = [name for name, _ in parse(pp) if name not in BATCHED_OPS]
    if missing:
        raise ConfigError(f"Preprocessing op(s) {', '.join(missing)} have no batched form.")
    return _compose(pp, ctx, BATCHED_OPS)


def draws(features: dict, salt: int, draw: Callable[[tf.Tensor], tf.Tensor], dtype) -> tf.Tensor:
    """For batched ops: `draw(op_seed(example, salt))` for every example of a batch, stacked
    (B, ...), so a batched op makes exactly the random draws of its per-example form.

    Stateless random ops take one seed, so the draws (a few numbers per example) run in a
    loop; the images are then transformed for the whole batch at once.
    """
    return tf.map_fn(
        lambda seed: draw(tf.random.experimental.stateless_fold_in(seed, salt)),
        features["seed"],
        fn_output_signature=dtype,
    )
