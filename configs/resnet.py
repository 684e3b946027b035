"""ResNet on ImageNet (He et al. 2015 recipe, with cosine decay as the default schedule).

    python train.py --config=configs/resnet.py:50 --workdir=gs://bucket/resnet50
    python train.py --config=configs/resnet.py:50,paper        # the paper's exact recipe
    python train.py --config=configs/resnet.py:50,smoke        # about a minute, synthetic data

arg: depth (18, 34, 50, 101, 152), optionally followed by ',paper' and/or ',smoke'.

',paper' is He et al. 2015 §3.4 as published: batch 256, SGD momentum 0.9, lr 0.1 divided by
10 when the validation accuracy plateaus (here: no gain for 5 epoch-end evaluations), up to
60×10⁴ iterations (120 epochs), weight decay 1e-4 on every weight, no label smoothing, no
warmup; scale augmentation (shorter side random in [256, 480], random 224 crop), flip, the
AlexNet PCA colour augmentation and mean subtraction. Paper: 24.7% single-model top-1 error
with 10-crop testing (Table 3, ResNet-50; 10-crop is not reproduced here).

Default recipe: SGD momentum 0.9,
lr 0.1 per 256 images (linear scaling), weight decay 1e-4 on kernels, 5 warmup epochs, 90
epochs, batch 1024, label smoothing 0.1, zero-initialised last BN of each block. Expected:
about 76-77% top-1 for ResNet-50 (torchvision's V1 weights: 76.13%). Needs ImageNet prepared
for TFDS (imagenet2012, manual download).
On a 2-core CPU: the recipes need ImageNet and an accelerator (90-120 epochs). `:18,smoke`
(synthetic 32 px data, 6 steps) about 30-40 s, `:50,smoke` about a minute, mostly compilation;
top-1 at chance.
"""

from cnnx.config_schema import base_config
from configs.common import parse_arg, smoke

DEPTHS = (18, 34, 50, 101, 152)


def get_config(arg: str | None = "50"):
    a = parse_arg(arg, depth=50, paper=False, smoke=False)
    if a.depth not in DEPTHS:
        raise ValueError(f"configs/resnet.py: depth must be one of {DEPTHS}, got {a.depth}")
    c = base_config()
    c.model.name = f"resnet{a.depth}"
    c.model.zero_init_residual = True
    c.model.drop_path_rate = 0.0
    c.data.source = "tfds:imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.train_pp = "inception_crop|flip|normalize"
    c.data.eval_pp = "resize_crop|normalize"
    c.optim.name = "sgd"
    c.optim.base_lr = 0.1
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 5.0
    c.train.batch_size = 1024
    c.train.num_epochs = 90.0
    c.train.label_smoothing = 0.1
    c.eval.batch_size = 1000
    c.ckpt.every_steps = 2000
    if a.paper:
        c.model.zero_init_residual = False
        c.data.train_pp = "resnet_scale|flip|lighting|normalize"  # 256-480 px at 224
        c.optim.decay_all = True
        c.schedule.name = "plateau"
        c.schedule.patience = 5
        c.schedule.decay_factor = 0.1
        c.schedule.warmup_epochs = 0.0
        c.train.batch_size = 256
        c.train.num_epochs = 120.0
        c.train.label_smoothing = 0.0
        c.eval.every_steps = None  # once per epoch: the plateau test
    if a.smoke:
        smoke(c, image_size=32)
    return c
