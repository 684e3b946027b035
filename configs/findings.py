"""The runs of the findings suite (cnnx/findings), one recipe per finding that needs its own.

    python scripts/findings.py --finding=batchnorm --workdir=DIR        # all runs + a verdict
    python train.py --config=configs/findings.py:batchnorm,norm=none,lr=2.0 --workdir=DIR

arg: <recipe>[,paper][,smoke][,option=value...]. Small form (default): the bundled digits (CIFAR
networks at 16 px, LeNet-5 at 32 px) on the digits recipe of configs/degradation_cifar.py
(`:<net>,smoke`: SGD momentum 0.9, 0.05 at batch 64, weight decay 1e-4, cosine) or of
configs/default.py (LeNet-5); `,paper`: the same networks on CIFAR-10 (CIFAR-100 for the
transfer source) through TFDS with the paper recipe of configs/degradation_cifar.py, or
ImageNet with configs/efficientnet.py's recipe for `scaling`; `,smoke`: the small form cut to
3 steps of 16 images at 8 px (LeNet-5: 32 px), as the suite's smoke scale runs it (about 10 s,
mostly compilation). Options, per recipe:

  batchnorm       plain20_cifar with (norm=batch) or without (norm=none) BatchNorm, base lr
                  `lr` per 256 images (default 0.2, the recipe's); 20 epochs, no warm-up, logged
                  every half epoch
                  (Ioffe & Szegedy 2015, Fig. 2: BN trains faster and at higher rates).
  init            plain32_cifar without BatchNorm, convolutions initialised `init` = he |
                  glorot | normal (N(0, 0.01)); lr 0.01 at batch 128 and weight decay 5e-4 as
                  He et al. 2015 ("Delving deep", §4); 20 epochs, no warm-up.
  regularisation  LeNet-5 on a small training set (20% of the digits' 1,438; 10% of CIFAR-10),
                  dropout `dropout` before the classifier, `augment` (random translation; CIFAR:
                  + flips) on or off; 150 epochs, evaluated once at the end.
  bottleneck      resnet20_cifar (block=basic) or its twin with 1×1 bottleneck blocks
                  (block=bottleneck: depth 29, the same three blocks per stage), width
                  multiplier `width`; 20 epochs (CIFAR-10: resnet56 vs depth 83).
  scaling         resnet20_cifar scaled by `depth`, `width` (multipliers through
                  cnnx.models.scaling) and input resolution `res` (× 16 px; ImageNet:
                  EfficientNet-B0 × 224 px); 20 epochs.
  transfer        resnet20_cifar: `source` trains on digits:parity (even / odd, all 1,438
                  training digits, 20 epochs); otherwise 72 training digits (5%; CIFAR-10: 5%)
                  for 150 steps, from scratch (load=0) or with the first `load` of (stem + stage
                  1, stage 2, stage 3) loaded from the source run `source_run` (its workdir)
                  and a fresh classifier.

Hyperparameters are the base recipes' unless stated here; nothing was tuned per finding.
On a quiet 2-core CPU the small runs take 10 s (LeNet-5) to about 2 minutes (plain32, 440
steps); scripts/findings.py prints each finding's total.
"""

import ml_collections

from cnnx.findings.registry import SMOKE_CUT
from configs.common import DIGITS_TRAIN_EXAMPLES, parse_arg
from configs.default import get_config as default_recipe
from configs.degradation_cifar import get_config as degradation_recipe
from configs.efficientnet import get_config as efficientnet_recipe

# recipe -> the options it reads (any other option set to a non-default value is an error).
RECIPES = {
    "batchnorm": ("norm", "lr"),
    "init": ("init",),
    "regularisation": ("dropout", "augment"),
    "bottleneck": ("block", "width"),
    "scaling": ("depth", "width", "res"),
    "transfer": ("source", "load", "source_run"),
}
DEFAULTS = dict(
    paper=False,
    smoke=False,
    norm="batch",
    lr=0.2,
    init="he",
    dropout=0.0,
    augment=False,
    block="basic",
    width=1.0,
    depth=1.0,
    res=1.0,
    source=False,
    load=0,
    source_run="",
)
STEPS_PER_EPOCH = DIGITS_TRAIN_EXAMPLES // 64  # the digits recipe's batch of 64
# Parameter-path prefixes of the first k stages of a CIFAR ResNet (bottom-up loading): paths
# read `stem/conv/kernel`, `stage2_block0/conv1/conv/kernel`, `head/fc/kernel`.
STAGES = ("stem/|stage1_", "stage2_", "stage3_")
CIFAR10_TRAIN = 50_000


def _check(a) -> None:
    if a.recipe not in RECIPES:
        raise ValueError(
            f"configs/findings.py: recipe is one of {sorted(RECIPES)}, got {a.recipe!r}"
        )
    allowed = set(RECIPES[a.recipe]) | {"paper", "smoke"}
    stray = sorted(k for k, v in DEFAULTS.items() if k not in allowed and getattr(a, k) != v)
    if stray:
        raise ValueError(
            f"configs/findings.py:{a.recipe} takes only {', '.join(sorted(allowed))}; "
            f"got {', '.join(stray)}"
        )


def _cifar_net(net: str, paper: bool, epochs: float = 20) -> ml_collections.ConfigDict:
    """configs/degradation_cifar.py's recipe for `net`: the paper's on CIFAR-10 (its full
    length), or the digits at 16 px for `epochs` epochs."""
    return degradation_recipe(net if paper else f"{net},smoke,epochs={epochs:g}")


def _batchnorm(a):
    if a.lr <= 0:
        raise ValueError("configs/findings.py:batchnorm: lr (base lr per 256 images) must be > 0")
    if a.norm not in ("batch", "none"):
        raise ValueError(f"configs/findings.py:batchnorm: norm is batch or none, got {a.norm!r}")
    c = _cifar_net("plain20", a.paper)
    c.model.norm = a.norm
    c.optim.base_lr = a.lr
    if not a.paper:
        c.train.log_every_steps = STEPS_PER_EPOCH // 2  # steps-to-target at half-epoch grain
    return c


def _init(a):
    c = _cifar_net("plain20", a.paper)
    c.model.name = "plain32_cifar"  # ~30 layers, as the deeper net of Delving deep's Fig. 3
    c.model.norm = "none"
    c.model.kernel_init = a.init
    c.optim.base_lr = 0.02  # 0.01 at batch 128
    c.optim.weight_decay = 5e-4
    return c


def _regularisation(a):
    c = default_recipe()
    if a.paper:
        cifar = degradation_recipe("plain20")
        c.data = cifar.data
        c.data.train_split = "train[:10%]"
        augment = "random_crop(padding=4)|flip|normalize"
        examples = CIFAR10_TRAIN // 10
    else:
        c.data.train_split = "train[:20%]"
        augment = c.data.train_pp  # the digits' random translation
        examples = round(DIGITS_TRAIN_EXAMPLES * 0.2)
    c.data.image_size = 32
    c.data.train_pp = augment if a.augment else "resize|normalize"
    c.model.dropout_rate = a.dropout
    c.train.num_epochs = 150.0
    c.train.log_every_steps = max(1, examples // c.train.batch_size)
    c.eval.every_steps = 10**6  # once, at the end
    c.ckpt.every_steps = 10**6
    return c


def _bottleneck(a):
    if a.block not in ("basic", "bottleneck"):
        raise ValueError(
            f"configs/findings.py:bottleneck: block is basic or bottleneck, not {a.block!r}"
        )
    c = _cifar_net("resnet56" if a.paper else "resnet20", a.paper)
    if a.block == "bottleneck":
        c.model.block = "bottleneck"
        c.model.depth = 83 if a.paper else 29  # 9n + 2: the same n blocks per stage
    c.model.width_mult = a.width
    return c


def _scaling(a):
    if a.paper:
        c = efficientnet_recipe("b0")
        base = 224
    else:
        c = _cifar_net("resnet20", False)
        base = c.data.image_size
    c.model.depth_mult = a.depth
    c.model.width_mult = a.width
    c.data.image_size = round(base * a.res)
    return c


def _transfer(a):
    if a.source:
        if a.load or a.source_run:
            raise ValueError("configs/findings.py:transfer,source trains the source: no load")
        c = _cifar_net("resnet20", a.paper)
        c.data.source = "tfds:cifar100" if a.paper else "digits:parity"
        return c
    if not 0 <= a.load <= len(STAGES):
        raise ValueError(f"configs/findings.py:transfer: load is 0 to {len(STAGES)} stages")
    if bool(a.load) != bool(a.source_run):
        raise ValueError("configs/findings.py:transfer: load=K (K > 0) needs source_run=<workdir>")
    c = _cifar_net("resnet20", a.paper)
    c.data.train_split = "train[:5%]"
    c.train.num_steps = 3000 if a.paper else 150  # about 150 epochs of CIFAR-10's 2,500
    c.train.log_every_steps = 10
    c.eval.every_steps = 50
    if a.load:
        c.init.checkpoint = a.source_run
        c.init.load_pattern = "^(" + "|".join(STAGES[: a.load]) + ")"
        c.init.reset_head = True  # 2 (CIFAR-100: 100) classes there, 10 here
    return c


_BUILD = {
    "batchnorm": _batchnorm,
    "init": _init,
    "regularisation": _regularisation,
    "bottleneck": _bottleneck,
    "scaling": _scaling,
    "transfer": _transfer,
}


def get_config(arg: str | None = "batchnorm"):
    a = parse_arg(arg, recipe="batchnorm", **DEFAULTS)
    _check(a)
    c = _BUILD[a.recipe](a)
    c.smoke = None  # the small form is the suite's result at that scale, not a smoke run
    if a.smoke:
        for dotted, value in SMOKE_CUT.items():
            section, key = dotted.split(".")
            c[section][key] = value
        c.data.image_size = 32 if c.model.name == "lenet5" else 8
        c.smoke = f"findings {a.recipe}: 3 steps at {c.data.image_size} px"
    return c
