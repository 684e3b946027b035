"""ResNet on ImageNet (He et al. 2015 recipe, with cosine decay as the default schedule).

    python train.py --config=configs/resnet.py:50 --workdir=gs://bucket/resnet50
    python train.py --config=configs/resnet.py:50,paper        # the paper's exact recipe
    python train.py --config=configs/resnet.py:50,smoke        # about a minute, synthetic data

    python train.py --config=configs/resnet.py:50,tv2 --workdir=W    # torchvision's v2 recipe
    python train.py --config=configs/resnet.py:50,rsb_a1 --workdir=W # timm's "ResNet strikes back"

arg: depth (18, 34, 50, 101, 152), optionally followed by one recipe (',paper', ',tv2',
',rsb_a1', ',rsb_a2', ',rsb_a3') and/or ',smoke'.

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

',tv2' is torchvision's recipe of its ResNet-50 IMAGENET1K_V2 weights (Vryniotis 2021, "How to
train state-of-the-art models using TorchVision's latest primitives"; references/
classification/README.md): 600 epochs, batch 1024, SGD momentum 0.9 at lr 0.5 (0.125 per
256), 5 linear warmup epochs then cosine, weight decay 2e-5 and none on normalisation
layers, label smoothing 0.1, Mixup 0.2 / CutMix 1.0, TrivialAugmentWide, random erasing 0.1,
repeated augmentation ×4, EMA (every 32 steps at 1 - 2e-5·1024·32/600, here per step:
0.99996585), training at 176 px, evaluation at 224 px after a 232 px resize. Expected: 80.86%
top-1 (torchvision's published 80.858, 95.434 top-5). Cost: 600 epochs of 1.28M images at
176 px, 2.5 GMACs forward each, ≈ 5.8·10^18 MACs of training (forward + backward ≈ 3×).
Differences: warmup starts at 0 (torchvision: 1% of the rate); torchvision resets its EMA to
the weights during warmup; biases keep no decay here (ResNet has only the classifier's).

',rsb_a1' / ',rsb_a2' / ',rsb_a3' are timm's procedures A1-A3 (Wightman, Touvron & Jégou
2021, "ResNet strikes back", Table 1): LAMB (ε 1e-6) at lr 5e-3 (A3: 8e-3) for batch 2048,
weight decay 0.01 (A2, A3: 0.02) off normalisation and biases, 5 warmup epochs then cosine,
binary cross entropy with target threshold 0.2 and no label smoothing, Mixup 0.2 (A2, A3: 0.1)
/ CutMix 1.0, RandAugment m7 σ0.5 (A3: m6), repeated augmentation ×3 (A3: none), stochastic
depth 0.05 (A3: none), no EMA; 600 / 300 / 100 epochs at 224 / 224 / 160 px; evaluation at
224 px with crop ratio 0.95. Expected top-1 at 224: 80.4% / 79.8% / 78.1% (Table 1). Cost:
≈ 9.4 / 4.7 / 0.8 ·10^18 MACs of training (4.1 GMACs per 224 px image forward, ×3).
Differences: warmup starts at 0 (timm: 1e-4); bilinear where timm evaluates bicubic.
"""

from cnnx.config_schema import base_config
from configs.common import parse_arg, smoke

DEPTHS = (18, 34, 50, 101, 152)


def get_config(arg: str | None = "50"):
    a = parse_arg(
        arg, depth=50, paper=False, tv2=False, rsb_a1=False, rsb_a2=False, rsb_a3=False, smoke=False
    )
    if a.depth not in DEPTHS:
        raise ValueError(f"configs/resnet.py: depth must be one of {DEPTHS}, got {a.depth}")
    recipes = [r for r in ("paper", "tv2", "rsb_a1", "rsb_a2", "rsb_a3") if getattr(a, r)]
    if len(recipes) > 1:
        raise ValueError(f"configs/resnet.py: choose one recipe, got {', '.join(recipes)}")
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
    if a.tv2:
        _torchvision_v2(c)
    for variant in ("a1", "a2", "a3"):
        if getattr(a, f"rsb_{variant}"):
            _resnet_strikes_back(c, variant)
    if a.smoke:
        smoke(c, image_size=32)
        c.data.eval_image_size = None  # evaluate at the smoke run's 32 px
        if c.data.repeated_augmentation > 1:  # whole groups of copies per batch (A1, A2: 3)
            c.train.batch_size = 8 * c.data.repeated_augmentation
    return c


def _torchvision_v2(c) -> None:
    """torchvision's ResNet-50 v2 recipe (see the module docstring)."""
    c.model.zero_init_residual = False
    c.data.image_size = 176
    c.data.eval_image_size = 224
    c.data.crop_pct = 224 / 232
    c.data.train_pp = "inception_crop|flip|trivialaugment_wide|normalize|random_erasing(prob=0.1)"
    c.data.repeated_augmentation = 4
    c.optim.base_lr = 0.5 * 256 / 1024
    c.optim.weight_decay = 2e-5
    c.schedule.warmup_epochs = 5.0
    c.train.batch_size = 1024
    c.train.num_epochs = 600.0
    c.train.label_smoothing = 0.1
    c.train.mixup_alpha = 0.2
    c.train.cutmix_alpha = 1.0
    c.train.ema_decay = 0.99996585  # (1 - 2e-5 · 1024 · 32 / 600) ** (1 / 32)


# (epochs, train px, lr at batch 2048, weight decay, mixup, RandAugment m, repeats, drop path)
RSB = {
    "a1": (600, 224, 5e-3, 0.01, 0.2, 7, 3, 0.05),
    "a2": (300, 224, 5e-3, 0.02, 0.1, 7, 3, 0.05),
    "a3": (100, 160, 8e-3, 0.02, 0.1, 6, 1, 0.0),
}


def _resnet_strikes_back(c, variant: str) -> None:
    """timm's "ResNet strikes back" procedure A1, A2 or A3 (see the module docstring)."""
    epochs, size, lr, wd, mixup, magnitude, repeats, drop_path = RSB[variant]
    c.model.drop_path_rate = drop_path
    c.data.image_size = size
    c.data.eval_image_size = 224
    c.data.crop_pct = 0.95
    c.data.train_pp = (
        "inception_crop|flip|randaugment(num_ops=2, magnitude="
        f"{magnitude}, magnitude_std=0.5, prob=0.5)|normalize"
    )
    c.data.repeated_augmentation = repeats
    c.optim.name = "lamb"
    c.optim.base_lr = lr * 256 / 2048
    c.optim.eps = 1e-6
    c.optim.weight_decay = wd
    c.schedule.warmup_epochs = 5.0
    c.train.batch_size = 2048
    c.train.num_epochs = float(epochs)
    c.train.loss = "sigmoid_xent"
    c.train.bce_target_threshold = 0.2
    c.train.label_smoothing = 0.0
    c.train.mixup_alpha = mixup
    c.train.cutmix_alpha = 1.0
