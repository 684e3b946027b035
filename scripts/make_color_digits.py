"""Write a small, real-looking image folder: coloured digits on coloured backgrounds.

scikit-learn's 8×8 handwritten digits, rendered at 40 px in a random colour on a random-coloured
background with a little Gaussian noise, saved as PNG files in cnnx's folder layout
(`<root>/train/<digit>/*.png`, `<root>/test/<digit>/*.png`; 1,400 train and 397 test images
by default). The run-health tests and the default recipe's check use it as a stand-in for a
user's own small folder: unlike the bundled grey digits, the contrast between digit and
background changes from image to image.

    python scripts/make_color_digits.py --output /tmp/color_digits
    python train.py --config=configs/default.py --config.data.source=folder:/tmp/color_digits \
        --workdir=/tmp/color_digits_run
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from absl import flags
from PIL import Image

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "output", None, "The folder to write (train/ and test/ inside).", flag_values=FLAGS
)
flags.DEFINE_integer("num_train", 1400, "Training images.", flag_values=FLAGS)
flags.DEFINE_integer(
    "num_test", None, "Test images (default: the other 397 digits).", flag_values=FLAGS
)
flags.DEFINE_integer("image_size", 40, "Image side in pixels.", flag_values=FLAGS)
flags.DEFINE_float(
    "noise",
    8.0,
    "Standard deviation of the Gaussian noise, in 0..255 pixel units.",
    flag_values=FLAGS,
)
flags.DEFINE_integer("seed", 0, "Seeds the order, the colours and the noise.", flag_values=FLAGS)
flags.mark_flag_as_required("output", flag_values=FLAGS)


def render(digit: np.ndarray, fg, bg, size: int, noise: float, rng) -> np.ndarray:
    """One 8×8 digit (values 0..16) as a (size, size, 3) uint8 image in colour `fg` on `bg`."""
    ink = Image.fromarray((digit * (255.0 / 16.0)).astype(np.uint8))
    alpha = np.asarray(ink.resize((size, size), Image.BILINEAR), np.float32)[..., None] / 255.0
    image = alpha * np.asarray(fg, np.float32) + (1.0 - alpha) * np.asarray(bg, np.float32)
    image += rng.normal(0.0, noise, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def make_color_digits(
    root: str,
    *,
    num_train: int = 1400,
    num_test: int | None = None,
    size: int = 40,
    noise: float = 8.0,
    seed: int = 0,
) -> dict[str, int]:
    """Writes the coloured-digits image folder under `root` (same files for the same seed).

    Args:
      root: output directory; `train/` and `test/` are created in it (existing files with the
        same names are overwritten).
      num_train: training images, drawn from the 1,797 digits in a seeded random order.
      num_test: test images, the next ones in that order (default: all the rest, 397).
      size: image side in pixels.
      noise: standard deviation of the added Gaussian noise, in 0..255 pixel units.
      seed: seeds the order, the colours and the noise.

    Returns:
      {'train': count, 'test': count}.

    Raises:
      ValueError: when more images are asked for than the 1,797 digits.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    total = len(digits.target)
    num_test = total - num_train if num_test is None else num_test
    if num_train < 1 or num_test < 1 or num_train + num_test > total:
        raise ValueError(
            f"num_train={num_train} and num_test={num_test} must be positive and sum to at "
            f"most {total}, the number of scikit-learn digits."
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(total)
    splits = {"train": order[:num_train], "test": order[num_train : num_train + num_test]}
    for split, indices in splits.items():
        for label in range(10):
            os.makedirs(os.path.join(root, split, str(label)), exist_ok=True)
        for i in indices:
            fg, bg = rng.integers(0, 256, size=(2, 3))
            image = render(digits.images[i], fg, bg, size, noise, rng)
            path = os.path.join(root, split, str(digits.target[i]), f"{i:04d}.png")
            Image.fromarray(image).save(path)
    return {split: len(indices) for split, indices in splits.items()}


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    counts = make_color_digits(
        args.output,
        num_train=args.num_train,
        num_test=args.num_test,
        size=args.image_size,
        noise=args.noise,
        seed=args.seed,
    )
    print(f"wrote {counts['train']} train and {counts['test']} test images to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
