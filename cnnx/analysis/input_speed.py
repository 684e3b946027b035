"""Images/s of the tf.data training pipeline over a folder of JPEG files.

`write_jpegs` fills a folder with ImageNet-like files: 500x375 (about the median ImageNet
size), quality 90, about 95 KB each (an average ImageNet file is about 110 KB); smooth random
colour fields with random rectangles and ellipses and pixel noise, so that decoding costs
about what it costs on photographs rather than on flat or pure-noise images.
`pipeline_throughput` reads them with the trainer's own input (`cnnx.data.TrainInput` over
the `folder:` source: shuffle, fused decode-and-crop, the `train_pp` ops, batching,
prefetch) and reports images/s after warm-up batches; with more batches than files it runs
through several epochs, as training does.
"""

import os
import statistics
import time

import numpy as np


def write_jpegs(
    root: str, count: int, size=(500, 375), classes: int = 10, seed: int = 0, quality: int = 90
) -> str:
    """Writes `count` JPEGs under `<root>/train/<class>/`; returns `root`."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(count):
        folder = os.path.join(root, "train", f"class_{i % classes:02d}")
        os.makedirs(folder, exist_ok=True)
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(24):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([x0, y0, x1, y1], fill=colour)
        noisy = np.asarray(img, np.int16) + rng.integers(-32, 33, (h, w, 3), dtype=np.int16)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f"{i:05d}.jpg"), quality=quality
        )
    return root


def pipeline_throughput(
    root: str,
    batch: int,
    resolution: int = 224,
    pp: str = "inception_crop|flip|normalize",
    warmup: int = 3,
    batches: int = 20,
    seed: int = 0,
) -> dict:
    """Images/s of `TrainInput` over `folder:<root>` (split `train`).

    Returns:
      {'ips': images / s over the timed batches, 'batch_ms_median', 'batches', 'files',
      'mean_file_kb', 'pp', 'resolution'}.
    """
    from cnnx.config_schema import base_config
    from cnnx.data import PPContext, TrainInput, get_source

    section = base_config().data
    section.source = f"folder:{root}"
    source = get_source(section)
    data = TrainInput(
        source=source,
        split="train",
        pp=pp,
        ctx=PPContext(image_size=resolution),
        global_batch=batch,
        seed=seed,
    )
    it = data.iterate(0)
    for _ in range(warmup):
        next(it)
    times = []
    start = time.perf_counter()
    for _ in range(batches):
        t = time.perf_counter()
        out = next(it)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    assert out["image"].shape == (batch, resolution, resolution, 3)
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    return {
        "ips": batch * batches / total,
        "batch_ms_median": 1e3 * statistics.median(times),
        "batches": batches,
        "files": len(files),
        "mean_file_kb": float(np.mean([os.path.getsize(f) for f in files])) / 1024,
        "pp": pp,
        "resolution": resolution,
    }
