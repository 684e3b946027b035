"""EfficientNet-B0…B7 on ImageNet with the recipe of Tan & Le 2019 (§5.2) and the
tensorflow/tpu EfficientNet code it came with.

    python train.py --config=configs/efficientnet.py:b0 --workdir=gs://BUCKET/efficientnet_b0
    python train.py --config=configs/efficientnet.py:b3,tf --workdir=gs://BUCKET/tf_b3
    python train.py --config=configs/efficientnet.py:b0,smoke --workdir=/tmp/effnet_smoke

arg: the variant (b0 to b7, default b0), optionally ',tf' (timm's tf_efficientnet_*: TF 'SAME'
padding, BN ε 1e-3, the layout of the official weights) and ',smoke' (synthetic 32 px data, one
block per stage, 6 steps). `configs/efficientnet_b0.py` is this file's b0.

Recipe: RMSProp (decay 0.9, momentum 0.9, ε 1e-3, mean square started at 1 as TF1), lr 0.016
per 256 images (0.256 at batch 4096) with 5 warmup epochs then ×0.97 every 2.4 epochs, 350
epochs, weight decay 1e-5, EMA 0.9999, dropout per the B0–B7 table and stochastic depth 0.2
(the registry's `dropout` and `drop_path` of each variant), label smoothing 0.1, AutoAugment;
train at the variant's resolution, evaluate with TF's centre crop (resolution /
(resolution + 32)). Needs ImageNet prepared for TFDS (imagenet2012, manual download) and an
accelerator: days on TPU/GPU, not feasible on a CPU.

Expected top-1 (torchvision's weights / the paper's TF weights, the registry's `top1`): B0
77.7 / 77.1%, B1 78.6 / 79.1%, B2 80.6 / 80.1%, B3 82.0 / 81.6%, B4 83.4 / 82.9%, B5 83.4 /
83.6%, B6 84.0 / 84.0%, B7 84.1 / 84.3%.
On a 2-core CPU: `:b0,smoke` about 1 minute (mostly compilation), top-1 at chance (10%).
"""

from cnnx import models
from cnnx.config_schema import base_config
from configs.common import parse_arg, smoke

VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7")


def get_config(arg: str | None = None):
    a = parse_arg(arg, variant="b0", tf=False, smoke=False)
    if a.variant not in VARIANTS:
        raise ValueError(
            f"configs/efficientnet.py: variant must be one of {VARIANTS}, not {a.variant!r}"
        )
    name = f"tf_efficientnet_{a.variant}" if a.tf else f"efficientnet_{a.variant}"
    spec = models.get_spec(name)
    c = base_config()
    c.model.name = name
    c.model.dropout_rate = spec.dropout
    c.model.drop_path_rate = spec.drop_path
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
    if a.smoke:
        smoke(c, image_size=32, model="one block per stage")
        c.model.depth_mult = 0.01  # one block per stage: compiles in seconds
        c.train.ema_decay = 0.9
    return c
