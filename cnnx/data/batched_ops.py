"""The batched forms of the basic preprocessing ops, in NumPy (no TensorFlow).

Registered in `cnnx.data.pp` with `@op(name, batched=True)`: `decode`, `resize`,
`resize_crop`, `random_crop`, `flip` and `normalize` on a batch of equally sized images
(`image` (B, H, W, C), `seed` (B, 2) int64). Each gives every example exactly, bit for bit,
what the per-example tf.data op of `cnnx.data.preprocess` gives it: the same random draws
(`cnnx.data.tf_random`), the same resize arithmetic (`resize`, TensorFlow's
ScaleAndTranslate in float32, in its order) and the same normalisation. The in-memory
pipelines (`cnnx.data.in_memory`) use them with or without TensorFlow installed.
"""

import functools

import numpy as np

from cnnx.data import tf_random
from cnnx.data.pp import PPContext, op

_F32 = np.float32
# The per-op salts that `cnnx.data.preprocess` folds into each example's seed (`op_seed`).
RANDOM_CROP_SALT = 2
FLIP_SALT = 3


@functools.lru_cache(maxsize=64)
def _spans(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The input positions and weights of each output position along one axis, as TensorFlow
    computes them for `tf.image.resize(..., 'bilinear', antialias=True)`: `ComputeSpansCore`
    of tensorflow/core/kernels/image/scale_and_translate_op.cc with the triangle kernel
    (sampling_kernels.h), scale out/in and no translation, in float32 step by step.

    Returns:
      starts (out_size,) int64: the first input position of each span; weights
      (out_size, span) float32, zero past the end of a span.
    """
    scale = _F32(out_size) / _F32(in_size)
    inv_scale = _F32(1.0 / float(scale))  # C++: `float = 1.0 / scale`, a double division
    inv_translate = -inv_scale * _F32(0.0)
    kernel_scale = max(inv_scale, _F32(1.0))  # antialias: widen the kernel to downsample
    radius = _F32(1.0) * kernel_scale  # the triangle's radius, 1
    span = min(2 * int(np.ceil(radius)) + 1, in_size)
    one_over_kernel_scale = _F32(1.0) / kernel_scale
    starts = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, span), _F32)
    for x in range(out_size):
        sample = (_F32(x) + _F32(0.5)) * inv_scale + inv_translate
        if sample < 0 or sample > in_size:
            continue
        start = int(np.ceil(sample - radius - _F32(0.5)))
        end = int(np.floor(sample + radius - _F32(0.5)))
        start = min(max(start, 0), in_size - 1)
        end = min(max(end, 0), in_size - 1) + 1
        kernel, total = [], _F32(0.0)
        for source in range(start, end):
            distance = abs((_F32(source) + _F32(0.5) - sample) * one_over_kernel_scale)
            kernel.append(_F32(1.0) - distance if distance < _F32(1.0) else _F32(0.0))
            total = total + kernel[-1]
        if abs(total) >= _F32(1000.0) * np.finfo(_F32).tiny:
            inv_total = _F32(1.0) / total
            weights[x, : len(kernel)] = [k * inv_total for k in kernel]
        starts[x] = start
    return starts, weights


def _gather(images: np.ndarray, axis: int, size: int) -> np.ndarray:
    """One separable pass of the resize along `axis` (1: rows, 2: columns), accumulated in
    float32 in the kernel's order (`GatherRows` / `GatherColumns`): sum_j w_j * x_j from 0.

    Past a span's end the weight is zero (the kernel stops there instead; adding +0 to a sum
    that started at +0 changes nothing).
    """
    starts, weights = _spans(size, images.shape[axis])
    shape = [1] * images.ndim
    shape[axis] = size
    out = np.zeros((*images.shape[:axis], size, *images.shape[axis + 1 :]), _F32)
    for j in range(weights.shape[1]):
        index = np.minimum(starts + j, images.shape[axis] - 1)
        out += weights[:, j].reshape(shape) * np.take(images, index, axis=axis)
    return out


def resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """`tf.image.resize(images, (height, width), 'bilinear', antialias=True)` of a batch
    (B, H, W, C), bit for bit: rows first, then columns (ScaleAndTranslate's CPU kernel).

    Returns:
      (B, height, width, C) float32 on the input's scale.
    """
    images = np.asarray(images, _F32)
    return _gather(_gather(images, 1, height), 2, width)


def resize_to(images: np.ndarray, size: int) -> np.ndarray:
    """`resize` to size x size as float32, skipped when the images already have that size
    (where the resize is exactly the identity: each output pixel centre falls on an input
    pixel centre, with weight 1)."""
    if images.shape[1:3] == (size, size):
        return np.asarray(images, _F32)
    return resize(images, size, size)


def shorter_side_size(height: int, width: int, image_size: int, pct: float) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to ceil(image_size / pct), at least
    image_size each: `cnnx.data.preprocess`'s float32 arithmetic (round half to even)."""
    h, w = _F32(height), _F32(width)
    short = np.ceil(_F32(image_size / pct))  # TensorFlow rounds the ratio to float32 first
    scale = short / min(h, w)
    new = np.round(np.array([h * scale, w * scale], _F32)).astype(np.int32)
    return tuple(int(v) for v in np.maximum(new, image_size))


def _images(f: dict) -> np.ndarray:
    """The batch's images: arrays (decoded images), never file bytes."""
    image = np.asarray(f["image"])
    if image.dtype.kind not in "uif" or image.ndim != 4:
        raise ValueError(
            f"batched preprocessing takes decoded images (B, H, W, C), got {image.dtype} "
            f"{image.shape}"
        )
    return image


@op("decode", batched=True)
def decode(ctx: PPContext):
    """`decode` on a batch of arrays: nothing to decode."""
    del ctx
    return lambda f: {**f, "image": _images(f)}


@op("resize", batched=True, resizes_first=True)
def resize_op(ctx: PPContext):
    """`resize` on a batch: the whole image to image_size x image_size."""
    return lambda f: {**f, "image": resize_to(_images(f), ctx.image_size)}


@op("resize_crop", batched=True)
def resize_crop(ctx: PPContext, crop_pct=None):
    """`resize_crop` on a batch: the shorter side to size / crop_pct, then the centre crop."""
    pct = crop_pct if crop_pct is not None else ctx.crop_pct
    s = ctx.image_size

    def fn(f):
        image = _images(f)
        new = shorter_side_size(image.shape[1], image.shape[2], s, pct)
        image = resize(image, *new)
        top, left = (new[0] - s) // 2, (new[1] - s) // 2
        return {**f, "image": image[:, top : top + s, left : left + s]}

    return fn


@op("random_crop", batched=True, resizes_first=True)
def random_crop(ctx: PPContext, padding: int = 4):
    """`random_crop` on a batch: the images resized to size, zero-padded by `padding` and
    cropped back to size at the offsets `tf.image.stateless_random_crop` draws for each
    (uniform int32 words below 2**31 - 1, modulo the number of positions). Each window is
    copied straight from the image into a zeroed output: the padding is never built."""
    s = ctx.image_size

    def fn(f):
        image = _images(f)
        if image.shape[1:3] != (s, s):
            image = resize(image, s, s)
        if padding < 0:
            raise ValueError(f"padding must be non-negative, got {padding}")
        seeds = tf_random.fold_in(np.asarray(f["seed"]), RANDOM_CROP_SALT)
        limit = np.array([2 * padding + 1, 2 * padding + 1, 1], np.int32)
        offsets = tf_random.uniform_int(seeds, 3, np.iinfo(np.int32).max) % limit
        out = np.zeros((len(image), s, s, image.shape[-1]), _F32)
        # Window [y, y + s) x [x, x + s) of the image (y, x in [-padding, padding]), clipped.
        for i, (y, x) in enumerate((offsets[:, :2] - padding).tolist()):
            top, left = max(y, 0), max(x, 0)
            bottom, right = min(y, 0) + s, min(x, 0) + s
            out[i, top - y : bottom - y, left - x : right - x] = image[i, top:bottom, left:right]
        return {**f, "image": out}

    return fn


def _pixels(images: np.ndarray) -> np.ndarray:
    """A view of contiguous (..., W, C) images with one element per pixel (its C values as one
    opaque item), so that mirroring a row copies pixels, not C-long runs."""
    return images.view(np.dtype((np.void, images.shape[-1] * images.itemsize)))


@op("flip", batched=True)
def flip(ctx: PPContext):
    """`flip` on a batch: each example mirrored when its uniform draw is below 0.5
    (`tf.image.stateless_random_flip_left_right`)."""
    del ctx

    def fn(f):
        image = np.ascontiguousarray(_images(f))
        seeds = tf_random.fold_in(np.asarray(f["seed"]), FLIP_SALT)
        mirror = tf_random.uniform_float(seeds, 1)[:, 0] < _F32(0.5)
        out = image.copy()
        source, target = _pixels(image), _pixels(out)
        for i in np.flatnonzero(mirror):
            target[i] = source[i, :, ::-1]
        return {**f, "image": out}

    return fn


@op("normalize", batched=True)
def normalize(ctx: PPContext):
    """`normalize` on a batch: (x / 255 - mean) / std per channel, true float32 divisions, as
    tf.data computes them (a bare `tf.function` would differ in the last bit: there Grappler
    turns a division by a constant into a multiplication by its reciprocal; tf.data's map
    functions, and eager mode, divide)."""
    mean, std = np.asarray(ctx.mean, _F32), np.asarray(ctx.std, _F32)

    def fn(f):
        image = np.asarray(f["image"]).astype(_F32)  # a copy, normalised in place
        *_, w, c = image.shape
        # Rows of W x C values and the constants tiled along them: the same operation on
        # every value as broadcasting over C, without NumPy's C-long inner loops.
        rows = image.reshape(-1, w * c)
        np.divide(rows, _F32(255.0), out=rows)
        np.subtract(rows, np.tile(np.broadcast_to(mean, (c,)), w), out=rows)
        np.divide(rows, np.tile(np.broadcast_to(std, (c,)), w), out=rows)
        return {**f, "image": image}

    return fn
