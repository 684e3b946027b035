"""GoogLeNet on ImageNet with the recipe of Szegedy et al. 2014 (§6).

    python train.py --config=configs/googlenet.py --workdir=gs://bucket/googlenet
    python train.py --config=configs/googlenet.py:v1        # the paper's net: no BN, LRN
    python train.py --config=configs/googlenet.py:smoke     # about a minute, synthetic data

Recipe: SGD momentum 0.9, learning rate ×0.96 every 8 epochs (the paper's "decreased by 4%
every 8 epochs"), Polyak averaging of the weights for the final model (EMA 0.9999), auxiliary
classifiers weighted 0.3 in the loss and dropped at inference, crops of 8-100% of the area
with aspect ratio 3/4-4/3 (Inception crop), flips and photometric distortions. The paper gives
no base learning rate; 0.1 per 256 images is ours. `googlenet` is torchvision's BN variant
(expected about 70% top-1, torchvision's weights: 69.78%); `:v1` trains the paper's network
(no BN, LRN, 40% dropout; paper: 31.3% top-1 error single net, 144 crops).
On a 2-core CPU: the recipe needs ImageNet and an accelerator (120 epochs). `:smoke`
(synthetic 32 px data, width ×0.25, one module per stage, 6 steps) about 50 s, mostly
compilation; top-1 at chance.
"""

from cnnx.config_schema import base_config
from configs.common import parse_arg, smoke


def get_config(arg: str | None = None):
    a = parse_arg(arg, v1=False, smoke=False)
    c = base_config()
    c.model.name = "googlenet_v1" if a.v1 else "googlenet"
    c.data.source = "tfds:imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 224
    c.data.train_pp = (
        "inception_crop|flip|color_jitter(brightness=0.125, contrast=0.5, saturation=0.5)|normalize"
    )
    c.data.eval_pp = "resize_crop|normalize"
    c.optim.name = "sgd"
    c.optim.base_lr = 0.1
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.schedule.name = "exponential"
    c.schedule.decay_factor = 0.96
    c.schedule.decay_every_epochs = 8.0
    c.train.batch_size = 256
    c.train.num_epochs = 120.0
    c.train.aux_loss_weight = 0.3
    c.train.ema_decay = 0.9999
    c.eval.batch_size = 500
    c.ckpt.every_steps = 5000
    if a.smoke:
        smoke(c, image_size=32, model="width ×0.25, one module per stage")
        c.model.width_mult = 0.25
        c.model.depth_mult = 0.01  # one inception module per stage
        c.train.ema_decay = 0.9
    return c
