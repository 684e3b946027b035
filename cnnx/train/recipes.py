"""Published training recipes shared by several thin config files.

A recipe fills a `base_config()` with one paper's hyper-parameters; the files in configs/ pick
the variant (`configs/efficientnet_b3.py` is one line over `efficientnet`).
"""

from cnnx import models
from cnnx.train.config import base_config, smoke

# Tan & Le 2019 (§5.2) and the tensorflow/tpu EfficientNet code it came with.
EFFICIENTNET_VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7")


def efficientnet(variant: str, arg: str | None = None):
    """EfficientNet-B0…B7 on ImageNet, the paper's recipe.

    RMSProp (decay 0.9, momentum 0.9, ε 1e-3, mean square started at 1 as TF1), lr 0.016 per
    256 images (0.256 at batch 4096) with 5 warmup epochs then ×0.97 every 2.4 epochs, 350
    epochs, weight decay 1e-5, EMA 0.9999, dropout per the B0–B7 table, stochastic depth 0.2,
    label smoothing 0.1, AutoAugment; train at the variant's resolution, evaluate with TF's
    centre crop (resolution / (resolution + 32)).

    arg: comma-separated options: 'tf' (timm tf_efficientnet_* — TF 'SAME' padding, BN ε 1e-3,
    the layout of the official weights), 'smoke' (synthetic data, seconds on a CPU).
    """
    if variant not in EFFICIENTNET_VARIANTS:
        raise ValueError(f"EfficientNet variant must be one of {EFFICIENTNET_VARIANTS}")
    options = set(filter(None, (arg or "").split(",")))
    unknown = options - {"tf", "smoke"}
    if unknown:
        raise ValueError(f"Unknown EfficientNet config options {sorted(unknown)}; use tf, smoke.")
    name = f"tf_efficientnet_{variant}" if "tf" in options else f"efficientnet_{variant}"
    spec = models.get_spec(name)
    c = base_config()
    c.model.name = name
    c.model.dropout_rate = spec.dropout
    c.model.drop_path_rate = 0.2
    c.data.source = "tfds:imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = spec.resolution
    c.data.crop_pct = spec.resolution / (spec.resolution + 32)
    c.data.train_pp = "inception_crop|flip|autoaugment|normalize"
    c.data.eval_pp = "resize_crop|normalize"
    c.optim.name = "rmsprop"
    c.optim.base_lr = 0.016
    c.optim.rms_decay = 0.9
    c.optim.momentum = 0.9
    c.optim.eps = 1e-3
    c.optim.rms_initial_scale = 1.0
    c.optim.weight_decay = 1e-5
    c.schedule.name = "exponential"
    c.schedule.warmup_epochs = 5.0
    c.schedule.decay_factor = 0.97
    c.schedule.decay_every_epochs = 2.4
    c.train.batch_size = 4096
    c.train.num_epochs = 350.0
    c.train.label_smoothing = 0.1
    c.train.ema_decay = 0.9999
    c.eval.batch_size = 1024
    c.ckpt.every_steps = 2000
    if "smoke" in options:
        smoke(c, image_size=32)
        c.model.depth_mult = 0.01  # one block per stage: compiles in seconds
        c.train.ema_decay = 0.9
    return c
