"""A PNG grid of every training augmentation applied to a few images (one row per op).

    python scripts/augment_gallery.py --out gallery.png                  # bundled digits
    python scripts/augment_gallery.py --photos --out gallery_photos.png   # sklearn's 2 photos
    python scripts/augment_gallery.py --folder PATH --out gallery.png     # your JPEG/PNG files

Each row runs one preprocessing string of `cnnx.data.preprocess` inside tf.data with the
stateless per-example seeds the training pipeline uses; the last rows are Mixup and CutMix
from `cnnx.data.mixing` (the pair of column i is column N-1-i, as in training). Random
erasing runs after `normalize`, so its row is shown un-normalised.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from cnnx.backends.cpu import flags as xla_flags
from cnnx.data import mixing, preprocess
from cnnx.data.preprocess import PPContext

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once

ROWS = (
    ("original (resize)", "resize"),
    ("resnet_scale", "resnet_scale"),
    ("inception_crop", "inception_crop"),
    ("flip", "resize|flip"),
    ("color_jitter", "resize|color_jitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)"),
    ("lighting (alphastd 0.5)", "resize|lighting(alphastd=0.5)"),
    ("cutout", "resize|cutout(size=0.4)"),
    ("random_erasing", "resize|normalize|random_erasing(prob=1.0)"),
    ("autoaugment", "resize|autoaugment"),
    ("randaugment n2 m9", "resize|randaugment(num_ops=2, magnitude=9)"),
)
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def load_images(args) -> list[np.ndarray]:
    """uint8 RGB images: digits (upsampled ×8), sklearn's sample photos, or a folder."""
    if args.folder:
        paths = sorted(p for p in Path(args.folder).iterdir() if p.suffix.lower() in
                       (".jpg", ".jpeg", ".png", ".bmp"))[: args.num]  # fmt: skip
        if not paths:
            raise SystemExit(f"no JPEG/PNG images in {args.folder}")
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if args.photos:
        from sklearn.datasets import load_sample_images

        photos = load_sample_images().images
        return [photos[i % len(photos)] for i in range(args.num)]
    from sklearn.datasets import load_digits

    d = load_digits()
    out = []
    for img in d.images[: args.num]:
        gray = Image.fromarray(np.round(img * 255 / 16).astype(np.uint8)).resize((64, 64))
        out.append(np.repeat(np.asarray(gray)[..., None], 3, axis=-1))
    return out


def run_row(pp: str, images, ctx: PPContext) -> list[np.ndarray]:
    fn = preprocess.build(pp, ctx)
    rows = []
    for i, img in enumerate(images):
        ds = tf.data.Dataset.from_tensors({"image": img, "label": 0, "seed": np.int64([7, i])})
        out = next(iter(ds.map(fn)))["image"].numpy().astype(np.float32)
        if "normalize" in pp:
            out = (out * np.array(STD) + np.array(MEAN)) * 255.0
        rows.append(np.clip(out, 0, 255).astype(np.uint8))
    return rows


def mixed_rows(originals, seed: int):
    x = np.stack(originals).astype(np.float32)
    labels = np.arange(len(originals))
    out = []
    for name, kw in (
        ("mixup a=0.8", dict(mixup_alpha=0.8)),
        ("cutmix a=1", dict(cutmix_alpha=1.0)),
    ):
        mixed, _, lam = mixing.mix_batch(jax.random.PRNGKey(seed), x, labels, len(x), **kw)
        out.append((f"{name} lam={float(lam):.2f}", list(np.asarray(mixed).astype(np.uint8))))
    return out


def grid(rows, size: int, label_width: int = 190) -> Image.Image:
    pad = 4
    cols = len(rows[0][1])
    canvas = Image.new(
        "RGB", (label_width + cols * (size + pad), len(rows) * (size + pad)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    for r, (name, images) in enumerate(rows):
        y = r * (size + pad)
        draw.text((4, y + size // 2 - 6), name, fill=(0, 0, 0))
        for c, img in enumerate(images):
            canvas.paste(Image.fromarray(img), (label_width + c * (size + pad), y))
    return canvas


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", help="folder of JPEG/PNG images (default: digits)")
    parser.add_argument("--photos", action="store_true", help="sklearn's two sample photos")
    parser.add_argument("--num", type=int, default=6, help="images (columns)")
    parser.add_argument("--size", type=int, default=96, help="output resolution of each op")
    parser.add_argument("--seed", type=int, default=0, help="mixup / cutmix draw")
    parser.add_argument("--out", default="augment_gallery.png")
    args = parser.parse_args()
    tf.config.set_visible_devices([], "GPU")
    images = load_images(args)
    ctx = PPContext(image_size=args.size, mean=MEAN, std=STD, channels=3)
    rows = [(name, run_row(pp, images, ctx)) for name, pp in ROWS]
    rows += mixed_rows(rows[0][1], args.seed)
    grid(rows, args.size).save(args.out)
    print(f"wrote {args.out}: {len(rows)} rows × {len(images)} images")


if __name__ == "__main__":
    main()
