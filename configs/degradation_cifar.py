"""The degradation experiment of He et al. 2015 (§4.2, Fig. 6): plain vs residual nets.

    python train.py --config=configs/degradation_cifar.py:plain56 --workdir=workdirs/plain56
    python train.py --config=configs/degradation_cifar.py:resnet56,smoke --workdir=/tmp/r56

arg: one of plain20, plain56, resnet20, resnet56 (CIFAR-10 via TFDS, the paper's recipe:
SGD 0.9, lr 0.1 at batch 128, ÷10 at 32k and 48k iterations, weight decay 1e-4, 64k
iterations, 4-pixel padding + random crop + flip), optionally ',smoke', which trains on the
bundled digits at 16 px for a few epochs instead. Expected on CIFAR-10 (Fig. 6): training
error of plain-56 above plain-20 (degradation), resnet-56 below resnet-20; test error
resnet-20 8.75%, resnet-56 6.97%. The CIFAR-10 runs need an accelerator (64k iterations of a
56-layer net); on this 2-core CPU only the digits smoke runs are practical.
`,smoke` on a 2-core CPU: 220 steps (10 epochs of the digits), evaluated once at the end;
about 40 s for resnet20 (35 CPU-seconds measured; 99.4% top-1), about three times that for
the 56-layer nets; a scaled-down run, not the paper's figure.
"""

from cnnx.config_schema import base_config
from configs.common import digits_data, parse_arg

NETWORKS = ("plain20", "plain56", "resnet20", "resnet56")


def get_config(arg: str | None = "resnet56"):
    a = parse_arg(arg, net="resnet56", smoke=False)
    if a.net not in NETWORKS:
        raise ValueError(f"configs/degradation_cifar.py: arg is one of {NETWORKS} [,smoke]")
    c = base_config()
    c.model.name = f"{a.net}_cifar"
    c.data.source = "tfds:cifar10"
    c.data.download = True
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = 32
    c.data.train_pp = "random_crop(padding=4)|flip|normalize"
    c.data.eval_pp = "resize|normalize"
    c.data.mean = (0.4914, 0.4822, 0.4465)
    c.data.std = (0.2470, 0.2435, 0.2616)
    c.optim.name = "sgd"
    c.optim.base_lr = 0.2  # 0.1 at batch 128
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.optim.decay_all = True
    c.schedule.name = "step"
    c.schedule.decay_epochs = (82, 123)  # 32k and 48k iterations at batch 128
    c.train.batch_size = 128
    c.train.num_steps = 64_000
    c.eval.batch_size = 500
    c.eval.every_steps = 2000
    c.ckpt.every_steps = 2000
    if a.smoke:
        # shuffle_buffer: the schema's, as before (any value >= 1,438 shuffles the whole split).
        digits_data(c, shuffle_buffer=10_000)
        c.data.download = False
        c.data.image_size = 16
        c.schedule.name = "cosine"
        c.train.batch_size = 64
        c.eval.batch_size = 128
        c.train.num_steps = 220  # 10 epochs of the 1,438 training digits
        c.train.log_every_steps = 22
        c.eval.every_steps = 1000
        c.ckpt.every_steps = 1000
        c.smoke = "digits at 16 px, 10 epochs"
    return c
