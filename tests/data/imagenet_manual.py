"""A miniature of ImageNet's manual download, in exactly the layout TFDS's `imagenet2012` builder
reads (tensorflow_datasets/datasets/imagenet2012/imagenet2012_dataset_builder.py, 5.1.0):

* `ILSVRC2012_img_train.tar`: one inner tar per synset, `n01440764.tar`, holding that
  synset's images `n01440764_<k>.JPEG`; the label is the inner tar's name.
* `ILSVRC2012_img_val.tar`: `ILSVRC2012_val_<8 digits>.JPEG`, flat and stored in shuffled
  order; TFDS sorts the names and pairs them with its `validation_labels.txt` line by line, so
  the first N validation images get its first N labels.

Among the training images, `n01739381_1309.JPEG` is a CMYK JPEG and `n02105855_2933.JPEG` a
PNG under a .JPEG name: the files TFDS's builder converts by name (its CMYK_IMAGES and
PNG_IMAGES), as the real archive has them.
"""

import io
import os
import random
import tarfile

import numpy as np
from PIL import Image

CMYK_FILE = "n01739381_1309.JPEG"
PNG_FILE = "n02105855_2933.JPEG"


def validation_labels() -> list[str]:
    """TFDS's synset for each validation image, in the order of the sorted file names."""
    import tensorflow_datasets as tfds

    path = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    return path.read_text().split()


def class_names() -> list[str]:
    """TFDS's 1000 synsets, in label order."""
    import tensorflow_datasets as tfds

    return tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()


def _image(synset: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """An image whose colour says its class (so a tiny model can learn it), with noise."""
    names = class_names()
    index = names.index(synset)
    colour = np.array([(index * 37) % 256, (index * 91) % 256, (index * 53) % 256], np.float64)
    noise = rng.normal(0, 12, (size, size, 3))
    return np.clip(colour + noise, 0, 255).astype(np.uint8)


def _encode(pixels: np.ndarray, kind: str = "jpeg") -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(pixels)
    if kind == "cmyk":
        image.convert("CMYK").save(buf, format="JPEG", quality=95)
    elif kind == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_manual_dir(
    manual_dir: str, *, num_val: int = 8, per_class: int = 2, size: int = 40, seed: int = 0
) -> dict:
    """Writes the two archives into `manual_dir`.

    The synsets are those of the first `num_val` validation labels plus the CMYK and PNG
    files' synsets, so every validation image has a class that training saw.

    Returns:
      {'train': {file name: synset}, 'val': {file name: synset}} as TFDS should label them.
    """
    rng = np.random.default_rng(seed)
    val_synsets = validation_labels()[:num_val]
    synsets = sorted({*val_synsets, CMYK_FILE.split("_")[0], PNG_FILE.split("_")[0]})
    os.makedirs(manual_dir, exist_ok=True)
    train = {}
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as outer:
        for synset in synsets:
            inner_buf = io.BytesIO()
            with tarfile.open(fileobj=inner_buf, mode="w") as inner:
                names = [f"{synset}_{k + 1}.JPEG" for k in range(per_class)]
                if synset == CMYK_FILE.split("_")[0]:
                    names[0] = CMYK_FILE
                if synset == PNG_FILE.split("_")[0]:
                    names[0] = PNG_FILE
                for name in names:
                    kind = "cmyk" if name == CMYK_FILE else "png" if name == PNG_FILE else "jpeg"
                    _add(inner, name, _encode(_image(synset, size, rng), kind))
                    train[name] = synset
            _add(outer, f"{synset}.tar", inner_buf.getvalue())
    val = {f"ILSVRC2012_val_{i + 1:08d}.JPEG": s for i, s in enumerate(val_synsets)}
    order = list(val)
    random.Random(seed).shuffle(order)  # the real archive is not in name order either
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as tar:
        for name in order:
            _add(tar, name, _encode(_image(val[name], size, rng)))
    return {"train": train, "val": val}
