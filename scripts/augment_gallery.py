"""A PNG grid of every training augmentation applied to a few images (one row per op).

    python scripts/augment_gallery.py --output gallery.png                 # bundled digits
    python scripts/augment_gallery.py --photos --output gallery_photos.png  # sklearn's 2 photos
    python scripts/augment_gallery.py --folder PATH --output gallery.png    # your JPEG/PNG files

Each row runs one preprocessing string of `cnnx.data.preprocess` inside tf.data with the
stateless per-example seeds the training pipeline uses; the last rows are Mixup and CutMix
from `cnnx.data.mixing` (the pair of column i is column N-1-i, as in training). Random
erasing runs after `normalize`, so its row is shown un-normalised.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "folder",
    None,
    "A folder of JPEG/PNG images to show (default: the bundled digits).",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "photos", False, "Show scikit-learn's two sample photos instead of digits.", flag_values=FLAGS
)
flags.DEFINE_integer("num_images", 6, "Images shown (the columns).", flag_values=FLAGS)
flags.DEFINE_integer("image_size", 96, "Output side of each op, in pixels.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the Mixup / CutMix draw.", flag_values=FLAGS)
flags.DEFINE_string("output", "augment_gallery.png", "The PNG to write.", flag_values=FLAGS)


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
    ("trivialaugment_wide", "resize|trivialaugment_wide"),
    ("augmix", "resize|augmix"),
)
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def load_images(args) -> list[np.ndarray]:
    """uint8 RGB images: digits (upsampled ×8), sklearn's sample photos, or a folder."""
    if args.folder:
        suffixes = (".jpg", ".jpeg", ".png", ".bmp")
        paths = sorted(p for p in Path(args.folder).iterdir() if p.suffix.lower() in suffixes)
        paths = paths[: args.num_images]
        if not paths:
            raise SystemExit(f"no JPEG/PNG images in {args.folder}")
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if args.photos:
        from sklearn.datasets import load_sample_images

        photos = load_sample_images().images
        return [photos[i % len(photos)] for i in range(args.num_images)]
    from sklearn.datasets import load_digits

    d = load_digits()
    out = []
    for img in d.images[: args.num_images]:
        gray = Image.fromarray(np.round(img * 255 / 16).astype(np.uint8)).resize((64, 64))
        out.append(np.repeat(np.asarray(gray)[..., None], 3, axis=-1))
    return out


def run_row(pp: str, images, ctx) -> list[np.ndarray]:
    from cnnx.data.pp import build

    tf = process_defaults.import_tensorflow("scripts/augment_gallery.py")

    fn = build(pp, ctx)
    rows = []
    for i, img in enumerate(images):
        ds = tf.data.Dataset.from_tensors({"image": img, "label": 0, "seed": np.int64([7, i])})
        out = next(iter(ds.map(fn)))["image"].numpy().astype(np.float32)
        if "normalize" in pp:
            out = (out * np.array(STD) + np.array(MEAN)) * 255.0
        rows.append(np.clip(out, 0, 255).astype(np.uint8))
    return rows


def mixed_rows(originals, seed: int):
    import jax

    from cnnx.data import mixing

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
    # A scalable font: the default bitmap one drops spaces ("mixupa=0.8").
    font = ImageFont.load_default(size=13)
    for r, (name, images) in enumerate(rows):
        y = r * (size + pad)
        draw.text((4, y + size // 2 - 7), name, fill=(0, 0, 0), font=font)
        for c, img in enumerate(images):
            canvas.paste(Image.fromarray(img), (label_width + c * (size + pad), y))
    return canvas


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    from cnnx.errors import CnnxError

    try:  # the ops are tf.data ops
        process_defaults.import_tensorflow("scripts/augment_gallery.py")
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from cnnx.data.preprocess import PPContext

    images = load_images(args)
    ctx = PPContext(image_size=args.image_size, mean=MEAN, std=STD, channels=3)
    rows = [(name, run_row(pp, images, ctx)) for name, pp in ROWS]
    rows += mixed_rows(rows[0][1], args.seed)
    grid(rows, args.image_size).save(args.output)
    print(f"wrote {args.output}: {len(rows)} rows × {len(images)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
