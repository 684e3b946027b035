"""Inception v3 on ImageNet with the recipe of Szegedy et al. 2015 §8 (and TF-slim's script).

    python train.py --config=configs/inception_v3.py --workdir=gs://bucket/inception_v3
    python train.py --config=configs/inception_v3.py:smoke --workdir=/tmp/iv3   # about a minute

arg: None or 'smoke'. Recipe: RMSProp with decay 0.9, ε 1.0 (inside the square root, mean
square initialised to 1.0 as TF1's RMSPropOptimizer), momentum 0.9; lr 0.045 decayed ×0.94
every 2 epochs; gradient clipping at norm 2.0; label smoothing 0.1; auxiliary classifier loss
weight 0.4 (TF-slim); weight decay 4e-5 on kernels; EMA of the weights (0.9999); 100 epochs;
299 px Inception crops (area 5-100%) with flips and colour distortion; inputs scaled to
[-1, 1]. The paper trained asynchronously, 50 replicas × 32 images, each replica applying lr
0.045; here 0.045 is the rate at a synchronous batch of 256. Expected: about 77-78% top-1
(paper: 21.2% top-1 error, single crop, Table 3; torchvision's port: 77.29%). Needs ImageNet
prepared for TFDS (imagenet2012, manual download).
On a 2-core CPU: the recipe needs ImageNet and an accelerator (100 epochs). `:smoke`
(synthetic 75 px data, width ×0.25, one module per stage, 6 steps) about a minute, mostly
compilation; top-1 at chance.
"""

from cnnx.config_schema import base_config
from configs.common import parse_arg, smoke


def get_config(arg: str | None = None):
    a = parse_arg(arg, smoke=False)
    c = base_config()
    c.model.name = "inception_v3"
    c.data.source = "tfds:imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 299
    c.data.train_pp = (
        "inception_crop(scale=(0.05, 1.0))|flip"
        "|color_jitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.2)|normalize"
    )
    c.data.eval_pp = "resize_crop(crop_pct=0.875)|normalize"
    c.data.mean = (0.5, 0.5, 0.5)
    c.data.std = (0.5, 0.5, 0.5)
    c.optim.name = "rmsprop"
    c.optim.base_lr = 0.045
    c.optim.rms_decay = 0.9
    c.optim.eps = 1.0
    c.optim.rms_initial_scale = 1.0
    c.optim.momentum = 0.9
    c.optim.weight_decay = 4e-5
    c.optim.grad_clip_norm = 2.0
    c.schedule.name = "exponential"
    c.schedule.decay_factor = 0.94
    c.schedule.decay_every_epochs = 2.0
    c.schedule.warmup_epochs = 0.0
    c.train.batch_size = 256
    c.train.num_epochs = 100.0
    c.train.label_smoothing = 0.1
    c.train.aux_loss_weight = 0.4
    c.train.ema_decay = 0.9999
    c.eval.batch_size = 500
    c.ckpt.every_steps = 2000
    if a.smoke:
        smoke(c, image_size=75, model="width ×0.25, one module per stage")
        c.model.width_mult = 0.25
        c.model.depth_mult = 0.01  # one module per stage: every layer type, fast to compile
        c.train.ema_decay = 0.9
    return c
