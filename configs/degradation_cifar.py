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
the 56-layer nets; a scaled-down run, not the paper's figure. At this length the 56-layer
residual net does not start (about 70% training error, like plain-56: issue 29's walk).

Options: `epochs=E` trains E epochs instead (the digits: 22 steps each; CIFAR-10: 391 at batch
128), `warmup=W` ramps the learning rate up linearly over the first W epochs. He et al. §4.2
warm up ResNet-110, for which lr 0.1 is "slightly too large to start converging", at 0.01 for
about 400 iterations (one CIFAR-10 epoch); the findings suite (cnnx/findings/degradation.py)
runs `:<net>,smoke,epochs=40,warmup=1` for all four networks alike.
"""

from cnnx.config_schema import base_config
from configs.common import DIGITS_TRAIN_EXAMPLES, digits_data, parse_arg

NETWORKS = ("plain20", "plain56", "resnet20", "resnet56")


def get_config(arg: str | None = "resnet56"):
    a = parse_arg(arg, net="resnet56", smoke=False, epochs=0.0, warmup=0.0)
    if a.net not in NETWORKS:
        raise ValueError(
            f"configs/degradation_cifar.py: unknown network {a.net!r}; arg is one of "
            f"{NETWORKS} [,smoke]"
        )
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
    c.schedule.warmup_epochs = a.warmup
    if a.epochs:
        c.train.num_steps = round(a.epochs * 50_000 / c.train.batch_size)
    if a.smoke:
        # shuffle_buffer: the schema's, as before (any value >= 1,438 shuffles the whole split).
        digits_data(c, shuffle_buffer=10_000)
        c.data.download = False
        c.data.image_size = 16
        c.schedule.name = "cosine"
        c.train.batch_size = 64
        c.eval.batch_size = 128
        steps_per_epoch = DIGITS_TRAIN_EXAMPLES // c.train.batch_size  # 22
        epochs = a.epochs or 10
        c.train.num_steps = round(epochs * steps_per_epoch)  # 220: 10 epochs of the digits
        c.train.log_every_steps = steps_per_epoch
        # The 10-epoch default evaluates once, at the end; longer runs every 10 epochs too.
        c.eval.every_steps = 10 * steps_per_epoch if a.epochs else 1000
        c.ckpt.every_steps = 1000
        c.smoke = f"digits at 16 px, {epochs:g} epochs"
    return c
