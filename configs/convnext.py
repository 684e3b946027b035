"""ConvNeXt on ImageNet with the DeiT-style recipe of Liu et al. 2022 (Table 5 / appendix A).

    python train.py --config=configs/convnext.py:tiny --workdir=gs://bucket/convnext_tiny
    python train.py --config=configs/convnext.py:tiny,smoke --workdir=/tmp/cnx   # about a minute

arg: size (tiny, small, base, large), optionally ',smoke'. Recipe: AdamW, lr 4e-3 at batch
4096 (2.5e-4 per 256, linear scaling), β (0.9, 0.999), weight decay 0.05 on kernels only,
20 warmup epochs then cosine to 1e-6, 300 epochs; RandAugment m9 (timm
'rand-m9-mstd0.5-inc1'), Mixup 0.8, CutMix 1.0, random erasing 0.25, label smoothing 0.1,
stochastic depth 0.1/0.4/0.5/0.5 (T/S/B/L), layer scale 1e-6 (the model's default), EMA
0.9999; 224 px, eval crop ratio 0.875. Expected: 82.1% top-1 for ConvNeXt-T (Table 1).
Needs ImageNet prepared for TFDS (imagenet2012, manual download).
On a 2-core CPU: the recipe needs ImageNet and an accelerator (300 epochs). `:tiny,smoke`
(synthetic 32 px data, width ×0.25, one block per stage, 6 steps) about 40 s, mostly
compilation; top-1 at chance.
"""

from cnnx.config_schema import base_config
from configs.common import parse_arg, smoke

DROP_PATH = {"tiny": 0.1, "small": 0.4, "base": 0.5, "large": 0.5}


def get_config(arg: str | None = "tiny"):
    a = parse_arg(arg, size="tiny", smoke=False)
    size = a.size
    if size not in DROP_PATH:
        raise ValueError(f"configs/convnext.py: size must be one of {list(DROP_PATH)}, got {size}")
    c = base_config()
    c.model.name = f"convnext_{size}"
    c.model.drop_path_rate = DROP_PATH[size]
    c.data.source = "tfds:imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 224
    c.data.crop_pct = 0.875
    c.data.train_pp = (
        "inception_crop|flip|randaugment(num_ops=2, magnitude=9, magnitude_std=0.5, prob=0.5)"
        "|normalize|random_erasing(prob=0.25)"
    )
    c.data.eval_pp = "resize_crop|normalize"
    c.optim.name = "adamw"
    c.optim.base_lr = 2.5e-4  # 4e-3 at batch 4096
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.05
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 20.0
    c.schedule.end_lr_factor = 2.5e-4  # 1e-6 / 4e-3
    c.train.batch_size = 4096
    c.train.num_epochs = 300.0
    c.train.label_smoothing = 0.1
    c.train.mixup_alpha = 0.8
    c.train.cutmix_alpha = 1.0
    c.train.mix_prob = 1.0
    c.train.mix_switch_prob = 0.5
    c.train.ema_decay = 0.9999
    c.eval.batch_size = 1000
    c.ckpt.every_steps = 2000
    if a.smoke:
        smoke(c, image_size=32, model="width ×0.25, one block per stage")
        c.model.width_mult = 0.25
        c.model.depth_mult = 0.01
        c.train.ema_decay = 0.9
    return c
