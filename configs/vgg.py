"""VGG on ImageNet with the recipe of Simonyan & Zisserman 2014 (§3.1).

    python train.py --config=configs/vgg.py:16 --workdir=gs://bucket/vgg16
    python train.py --config=configs/vgg.py:16_bn          # batch-norm variant (torchvision)
    python train.py --config=configs/vgg.py:11_lrn,smoke   # about a minute, synthetic data

arg: configuration 11 (A), 11_lrn (A-LRN), 13 (B), 16c (C), 16 (D), 19 (E), or 11_bn, 13_bn,
16_bn, 19_bn; optionally ',smoke'. Recipe: SGD momentum 0.9, batch 256, lr 1e-2 divided by 10
when validation accuracy stops improving (three times in the paper, 74 epochs), weight decay
5e-4, dropout 0.5 in the first two FC layers, scale jittering (shorter side random in
[256, 512], 224 crops) with flips and colour shift. Expected: 24.4-25.6% top-1 error single
scale for D/E (paper Table 3); torchvision's vgg16: 71.59% top-1.
On a 2-core CPU: the recipe needs ImageNet and an accelerator (74 epochs). `:11_lrn,smoke`
(synthetic 32 px data, width ×0.25, 6 steps) about 25 s, mostly compilation; top-1 at
chance.
"""

from cnnx.config_schema import base_config
from configs.common import parse_arg, smoke

VARIANTS = ("11", "11_lrn", "13", "16c", "16", "19", "11_bn", "13_bn", "16_bn", "19_bn")


def get_config(arg: str | None = "16"):
    a = parse_arg(arg, variant="16", smoke=False)
    if a.variant not in VARIANTS:
        raise ValueError(f"configs/vgg.py: arg is one of {VARIANTS} [,smoke]; got {arg!r}")
    c = base_config()
    c.model.name = f"vgg{a.variant}"
    c.data.source = "tfds:imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 224
    c.data.train_pp = "resnet_scale(min=1.143, max=2.286)|flip|lighting|normalize"
    c.data.eval_pp = "resize_crop|normalize"
    c.optim.name = "sgd"
    c.optim.base_lr = 0.01
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.schedule.name = "plateau"
    c.schedule.decay_factor = 0.1
    c.schedule.patience = 2
    c.train.batch_size = 256
    c.train.num_epochs = 74.0
    c.eval.batch_size = 500
    c.ckpt.every_steps = 5000
    if a.smoke:
        smoke(c, image_size=32, model="width ×0.25")
        c.model.width_mult = 0.25
    return c
