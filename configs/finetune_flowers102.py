"""Transfer learning: fine-tune an ImageNet ResNet-50 on Oxford Flowers-102 (TFDS).

    python train.py --config=configs/finetune_flowers102.py \
        --config.init.torch_weights=resnet50-11ad3fa6.pth --workdir=workdirs/flowers
    python train.py --config=configs/finetune_flowers102.py:probe ...   # frozen backbone
    python train.py --config=configs/finetune_flowers102.py:smoke \
        --config.init.checkpoint=workdirs/demo --workdir=/tmp/ft        # runs here, on digits

The classic small-data transfer example: 1,020 training images (train split; `validation`
adds 1,020 more), 6,149 test images, 102 classes. Start from ImageNet weights (a torchvision
`.pth` / timm `.safetensors` file you have, converted on the fly, or a cnnx checkpoint via
--config.init.checkpoint), replace the 1000-way head with a fresh 102-way one, and train:
- default: full fine-tune, the backbone at 0.1× the head's learning rate;
- `probe`: linear probe (backbone frozen) on precomputed features (fast path);
- `top`: train only the last stage and the head.
SGD momentum 0.9, 0.04 per 256 images (0.01 at batch 64), cosine over 30 epochs, weight decay
1e-4 on kernels, label smoothing 0.1. Expected: about 90%+ top-1 (full fine-tune from
torchvision's ResNet-50 V1 weights) — not run here, ImageNet weights cannot be downloaded.

`smoke` fine-tunes LeNet-5 on digits:parity (even / odd) from a checkpoint trained on the
10-digit task (`make demo` writes one to workdirs/demo), backbone frozen.
On a 2-core CPU: the full and `top` fine-tunes need an accelerator (30 epochs of a ResNet-50
at 224 px); `probe` computes the features once and then trains only the head. `smoke`: about
20 s, about 98% top-1 on even / odd.
"""

from cnnx.config_schema import base_config
from configs.common import digits_data, parse_arg

BACKBONE = r"^(?!head/)"  # everything but the classifier


def get_config(arg: str | None = None):
    a = parse_arg(arg, probe=False, top=False, smoke=False)
    c = base_config()
    c.model.name = "resnet50"
    c.data.source = "tfds:oxford_flowers102"
    c.data.download = True  # a small dataset TFDS can fetch itself
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = 224
    c.data.train_pp = "inception_crop|flip|normalize"
    c.data.eval_pp = "resize_crop|normalize"
    c.init.torch_weights = "resnet50-11ad3fa6.pth"
    c.init.reset_head = True
    c.optim.name = "sgd"
    c.optim.base_lr = 0.04
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.train.batch_size = 64
    c.train.num_epochs = 30.0
    c.train.label_smoothing = 0.1
    c.train.log_every_steps = 20
    c.eval.batch_size = 128
    c.ckpt.every_steps = 200
    c.train.lr_mult_pattern = BACKBONE
    c.train.lr_mult = 0.1
    if a.probe:
        c.train.trainable = r"^head/"
        c.train.lr_mult_pattern = None
        c.data.train_pp = "resize_crop|normalize"  # deterministic: features computed once
        c.train.fast_linear_probe = True
        c.train.label_smoothing = 0.0
    if a.top:
        c.train.trainable = r"^(stage4_|head/)"
        c.train.lr_mult_pattern = None
    if a.smoke:
        c.model.name = "lenet5"
        # shuffle_buffer: the schema's, as before (any value >= 1,438 shuffles the whole split).
        digits_data(c, shuffle_buffer=10_000)
        c.data.source = "digits:parity"
        c.data.download = False
        c.data.image_size = 32
        c.init.torch_weights = None
        c.init.checkpoint = "workdirs/demo"
        c.train.trainable = r"^output/"
        c.train.lr_mult_pattern = None
        c.train.fast_linear_probe = False
        c.optim.base_lr = 0.4
        c.train.batch_size = 64
        c.train.num_steps = 60
        c.eval.batch_size = 128
        c.train.log_every_steps = 10
        c.ckpt.every_steps = 60
        c.smoke = "LeNet-5 on digits:parity, 60 steps"
    return c
