"""FixRes (Touvron et al. 2019): train at R_train, test at several R_test, fine-tune at R_test.

    python scripts/fixres.py --config=configs/sweeps/fixres.py:digits --workdir=DIR
    python scripts/fixres.py --config=configs/sweeps/fixres.py:imagenet --workdir=DIR
    python scripts/fixres.py --config=configs/sweeps/fixres.py:digits \
        --config.finetune.last_n_blocks=2 --config.crop_pct=1.0 --workdir=DIR

arg: 'digits' (default; resnet20_cifar on scikit-learn digits, trained at 24 px with
random-resized crops, tested at 16-40 px) or 'imagenet' (ResNet-50, trained at 128 and 224 px,
tested at 128-448 px; the paper's Table 1 setting), optionally ',model=<name>'; any other word
is refused.
Sections: `train` (the full training config used at every R_train), `train_resolutions`,
`test_resolutions`, `crop_pct` (test-time resize ratio: resize to R_test / crop_pct, centre
crop), `finetune` (steps, batch_size, lr, momentum, weight_decay, `trainable` regex over
'/'-joined parameter paths — default classifier + normalisation layers —, `last_n_blocks`,
`pp` (default: the eval preprocessing), `resolutions` (default: all test resolutions)).
Expected (digits): before fine-tuning, top-1 peaks above R_train (the FixRes effect) and falls
off at the extremes; fine-tuning recovers most of the loss at every R_test.
"""

import ml_collections

from cnnx.config_schema import base_config
from cnnx.sweeps.fixres import DEFAULT_TRAINABLE
from configs.common import digits_data, parse_arg


def _digits_train(model: str) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name = model
    digits_data(c)
    c.data.channels = 1
    # Random-resized crops (scale 0.25-1: the digits are small images, 0.08 would erase them).
    c.data.train_pp = "inception_crop(scale=(0.25, 1.0))|normalize"
    c.data.eval_pp = "resize_crop|normalize"
    c.optim.name = "sgd"
    c.optim.base_lr = 0.4
    c.optim.nesterov = True
    c.optim.weight_decay = 5e-4
    c.schedule.warmup_epochs = 1.0
    c.train.batch_size = 64
    c.train.num_steps = 400
    c.train.log_every_steps = 100
    c.eval.batch_size = 120
    c.eval.every_steps = 100_000
    c.ckpt.every_steps = 200
    return c


def _imagenet_train(model: str) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name = model
    c.data.source = "tfds:imagenet2012"
    c.data.eval_split = "validation"
    c.data.train_pp = "inception_crop|flip|normalize"
    c.data.eval_pp = "resize_crop|normalize"
    c.train.batch_size = 1024
    c.train.num_epochs = 90.0
    c.train.label_smoothing = 0.1
    c.schedule.warmup_epochs = 5.0
    c.eval.batch_size = 1000
    c.ckpt.every_steps = 2000
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, digits=False, imagenet=False, model="")
    if a.digits and a.imagenet:
        raise ValueError(f"config arg {arg!r}: digits or imagenet, not both")
    imagenet = a.imagenet
    c = ml_collections.ConfigDict()
    if imagenet:
        c.train = _imagenet_train(a.model or "resnet50")
        c.train_resolutions = (128, 224)
        c.test_resolutions = (128, 160, 224, 288, 320, 384, 448)
    else:
        c.train = _digits_train(a.model or "resnet20_cifar")
        c.train_resolutions = (24,)
        c.test_resolutions = (16, 20, 24, 28, 32, 40)
    c.crop_pct = 0.875
    c.finetune = ml_collections.ConfigDict()
    c.finetune.steps = 2000 if imagenet else 80
    c.finetune.batch_size = 256 if imagenet else 64
    c.finetune.lr = 0.004 if imagenet else 0.02
    c.finetune.momentum = 0.9
    c.finetune.weight_decay = 0.0
    c.finetune.trainable = DEFAULT_TRAINABLE
    c.finetune.last_n_blocks = 0
    c.finetune.pp = ml_collections.config_dict.placeholder(str)
    c.finetune.resolutions = ()
    return c
