"""CIFAR-10 ResNets of He et al. 2015 §4.2 (also the plain twins).

    python train.py --config=configs/resnet_cifar.py:56 --workdir=workdirs/resnet56_cifar
    python train.py --config=configs/resnet_cifar.py:20,digits   # no download: the digits
    python train.py --config=configs/resnet_cifar.py:20,smoke

arg: depth (20, 32, 44, 56, 110), optional ',plain' for the network without shortcuts, and
',digits' / ',smoke' for data that runs anywhere. Paper recipe: SGD momentum 0.9, lr 0.1
(batch 128), ÷10 at 32k and 48k iterations (epochs 82 and 123 of 164), weight decay 1e-4,
4-pixel padding + random 32×32 crop + flip. Expected: 91.25% (ResNet-20) to 93.57%
(ResNet-110) on CIFAR-10 (Table 6); needs tfds cifar10 (downloads itself with
--config.data.download=True) and an accelerator: 64k steps at 32 px.

',digits': 30 epochs on the bundled digits (330 steps at batch 128), evaluating every 5 epochs
and at the end (one evaluation costs about an epoch of training). On a 2-core CPU: `:20,digits`
about 4 minutes, 99% top-1; `:56,digits` about 20-30 minutes (extrapolated from 55 steps: 220
CPU-seconds, compilation included); `:20,smoke` (synthetic data, 6 steps) about 25 s, mostly
compilation.
"""

from cnnx.config_schema import base_config
from configs.common import digits_data, eval_every_epochs, parse_arg, smoke

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


DEPTHS = (20, 32, 44, 56, 110)


def get_config(arg: str | None = "20"):
    a = parse_arg(arg, depth=20, plain=False, digits=False, smoke=False)
    if a.depth not in DEPTHS:
        raise ValueError(f"configs/resnet_cifar.py: depth must be one of {DEPTHS}, got {a.depth}")
    c = base_config()
    c.model.name = f"{'plain' if a.plain else 'resnet'}{a.depth}_cifar"
    c.data.source = "tfds:cifar10"
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = 32
    c.data.train_pp = "random_crop(padding=4)|flip|normalize"
    c.data.eval_pp = "resize|normalize"
    c.data.mean = CIFAR_MEAN
    c.data.std = CIFAR_STD
    c.optim.name = "sgd"
    c.optim.base_lr = 0.2  # 0.1 at batch 128
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.optim.decay_all = True  # the paper decays every weight
    c.schedule.name = "step"
    c.schedule.decay_epochs = (82, 123)
    c.schedule.decay_factor = 0.1
    c.train.batch_size = 128
    c.train.num_epochs = 164.0
    c.eval.batch_size = 500
    c.ckpt.every_steps = 2000
    if a.digits:
        # Kept at the schema's 10,000 so earlier workdirs resume (any value >= 1,438 shuffles
        # the whole split).
        digits_data(c, shuffle_buffer=10_000)
        c.train.num_epochs = 30.0
        c.schedule.name = "cosine"
        c.schedule.warmup_epochs = 1.0
        c.train.log_every_steps = 50
        c.ckpt.every_steps = 500
        eval_every_epochs(c, 5)  # an evaluation costs about an epoch of training here
    if a.smoke:
        smoke(c, image_size=32)
    return c
