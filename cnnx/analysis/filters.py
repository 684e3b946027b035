"""First-layer filters as an image grid (PNG).

The first convolution is found in the parameter tree itself: the first 4-D kernel (HWIO) in
the tree's insertion order (Flax creates modules in call order) whose input channels look like
an image's (1, 3 or 4); failing that, the first 4-D kernel. Each filter is min-max normalised
on its own, shown in colour when it has 3 input channels and in grey otherwise (mean over the
input channels), and scaled up by nearest neighbour so small kernels stay visible;
`filters_png` titles the grid with what it shows.
"""

import io
import math
from collections.abc import Mapping

import numpy as np


def _kernels(tree, path=()):
    """(path, array) of 4-D leaves in insertion order (dicts are walked as stored)."""
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from _kernels(v, (*path, str(k)))
    elif hasattr(tree, "shape") and len(tree.shape) == 4:
        yield path, tree


def first_conv_kernel(params) -> tuple[str, np.ndarray]:
    """('module/path/kernel', HWIO array) of the model's first convolution."""
    kernels = list(_kernels(params))
    if not kernels:
        raise ValueError("no 4-D (HWIO) convolution kernel in these parameters")
    image_like = [(p, k) for p, k in kernels if k.shape[2] in (1, 3, 4)]
    path, kernel = (image_like or kernels)[0]
    return "/".join(path), np.asarray(kernel, np.float32)


def filter_images(kernel: np.ndarray) -> np.ndarray:
    """HWIO kernel -> (O, H, W, 3) images in [0, 1], each filter normalised on its own."""
    k = np.moveaxis(np.asarray(kernel, np.float32), 3, 0)  # O, H, W, I
    k = k[..., :3] if k.shape[-1] in (3, 4) else k.mean(-1, keepdims=True).repeat(3, -1)
    lo = k.min(axis=(1, 2, 3), keepdims=True)
    hi = k.max(axis=(1, 2, 3), keepdims=True)
    return (k - lo) / np.maximum(hi - lo, 1e-12)


def grid(images: np.ndarray, min_cell: int = 24, border: int = 1) -> np.ndarray:
    """Tiles (N, H, W, 3) images into one uint8 image, ~square, scaled up to `min_cell` px."""
    n, h, w, _ = images.shape
    scale = max(1, math.ceil(min_cell / max(h, w)))
    images = images.repeat(scale, 1).repeat(scale, 2)
    h, w = h * scale, w * scale
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.ones((rows * (h + border) + border, cols * (w + border) + border, 3), np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = border + r * (h + border), border + c * (w + border)
        out[y : y + h, x : x + w] = images[i]
    return (out * 255).round().astype(np.uint8)


def filters_png(params, title: str = "", min_cell: int = 48, dpi: int = 100) -> bytes:
    """PNG bytes of the first convolution's filters of a params pytree, titled.

    Args:
      params: a Flax params pytree (numpy or jax arrays).
      title: what the filters are of (e.g. 'lenet5, step 660'); the layer path, the filter
        count and kernel size are added below it.
      min_cell: each filter is scaled up (nearest neighbour) to at least this many pixels.
      dpi: of the PNG; the grid is drawn one array pixel per PNG pixel.

    Raises:
      ValueError: the parameters hold no 4-D (HWIO) kernel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path, kernel = first_conv_kernel(params)
    cols = math.ceil(math.sqrt(kernel.shape[3]))
    # Few filters (LeNet's 6) get bigger cells: the grid is at least ~240 px wide.
    image = grid(filter_images(kernel), max(min_cell, 240 // cols))
    h, w = image.shape[:2]
    title_px = 56  # two lines of 11-pt text
    width = max(w, 360)  # room for the title under narrow grids
    fig = plt.figure(figsize=(width / dpi, (h + title_px) / dpi), dpi=dpi)
    ax = fig.add_axes((0.5 - w / width / 2, 0, w / width, h / (h + title_px)))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    kh, kw, _, n = kernel.shape
    subtitle = f"{path}: {n} filters {kh}×{kw}, each min–max scaled"
    fig.suptitle(f"{title}\n{subtitle}" if title else subtitle, fontsize=9, y=0.99, va="top")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
