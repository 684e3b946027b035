"""AlexNet on ImageNet with the recipe of Krizhevsky et al. 2012 (§5).

    python train.py --config=configs/alexnet.py --workdir=gs://bucket/alexnet
    python train.py --config=configs/alexnet.py:original   # the paper's two-tower net, 227 px
    python train.py --config=configs/alexnet.py:smoke      # about a minute, synthetic data

Recipe: SGD momentum 0.9, lr 0.01 at batch 128 (0.02 per 256), divided by 10 when validation
accuracy stops improving (reduce-on-plateau), weight decay 5e-4, batch 128, dropout 0.5 in
FC6/FC7, about 90 epochs; images resized to 256 on the shorter side, random crops and flips,
PCA lighting noise (α std 0.1). Expected: about 57% top-1 single crop (torchvision's weights
for `alexnet`: 56.52%; paper: 40.7% top-1 error with 10-crop averaging, 5 nets).
On a 2-core CPU: the recipe needs ImageNet and an accelerator (90 epochs). `:smoke`
(synthetic data, width ×0.25, 6 steps) about 20 s, mostly compilation; top-1 at chance.
"""

from cnnx.config_schema import base_config
from configs.common import parse_arg, smoke


def get_config(arg: str | None = None):
    a = parse_arg(arg, original=False, smoke=False)
    c = base_config()
    original = a.original
    c.model.name = "alexnet_original" if original else "alexnet"
    size = 227 if original else 224
    c.data.source = "tfds:imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = size
    scale = round(256 / size, 4)
    c.data.train_pp = f"resnet_scale(min={scale}, max={scale})|flip|lighting|normalize"
    c.data.crop_pct = size / 256
    c.data.eval_pp = "resize_crop|normalize"
    c.optim.name = "sgd"
    c.optim.base_lr = 0.02
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.schedule.name = "plateau"
    c.schedule.decay_factor = 0.1
    c.schedule.patience = 3
    c.train.batch_size = 128
    c.train.num_epochs = 90.0
    c.eval.batch_size = 500
    c.ckpt.every_steps = 5000
    if a.smoke:
        smoke(c, image_size=67 if original else 63, model="width ×0.25")
        c.model.width_mult = 0.25
        c.train.batch_size = 16
    return c
