"""The config schema: every field a cnnx config has, with its default, and the rules its
values must follow (`validate`).

Recipe files in configs/ start from `base_config()` and change values; since configs are
loaded locked, a field that is not here cannot be set (a misspelled override is an error).
Optional values are typed placeholders (None until set), so overrides still type-check.

Imports neither TensorFlow nor JAX: loading a config, `--print_config` and the sweep
coordinator run without them. The names the rules accept from registries that live above
this module (optimizers, schedules, data sources, losses) are written here as strings;
tests/test_config_schema.py checks that they are the registries' keys.
"""

import math
import re

import ml_collections
from ml_collections import config_dict

from cnnx.errors import ConfigError
from cnnx.image_stats import IMAGENET_MEAN, IMAGENET_STD

# The keys of cnnx.train.optim.OPTIMIZERS and SCHEDULES, of cnnx.data.sources.SOURCES (the
# part of `data.source` before the first ':') and of cnnx.train.losses.LOSSES.
OPTIMIZER_NAMES = ("sgd", "rmsprop", "adamw", "lamb", "lars")
SCHEDULE_NAMES = ("constant", "cosine", "step", "exponential", "plateau")
SOURCE_KINDS = ("digits", "synthetic", "folder", "tfds")
LOSS_NAMES = ("softmax_xent", "sigmoid_xent")


def base_config() -> ml_collections.ConfigDict:
    """Every field of a cnnx config, each at its default (see the comments beside them)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Set by a recipe's `:smoke` arg: what makes the run a smoke test rather than a result
    # (e.g. 'synthetic data, a few steps'); the final summary line repeats it. None: a real run.
    c.smoke = config_dict.placeholder(str)

    # Model: `name` from the registry; everything else is passed to its constructor.
    c.model = ml_collections.ConfigDict()
    c.model.name = "lenet5"
    c.model.width_mult = 1.0
    c.model.depth_mult = 1.0
    c.model.dropout_rate = config_dict.placeholder(float)  # default: the model's
    c.model.drop_path_rate = config_dict.placeholder(float)  # stochastic depth; the model's
    # The classifier's outputs; default: the data's class count, which it must equal (a
    # different head is refused: cnnx.train.experiment.decide_num_classes).
    c.model.num_classes = config_dict.placeholder(int)
    # The compute dtype: 'auto' is bfloat16 on TPUs and bfloat16-capable GPUs, float32 on CPUs
    # (cnnx.backends.chips.auto_dtype); a workdir keeps the dtype it was started with.
    # Parameters, BatchNorm statistics, the loss, EMA and optimizer state are float32 always.
    c.model.dtype = "auto"
    # Rematerialisation: recompute each block's activations in the backward pass instead of
    # storing them (less memory, about one more forward pass of compute). remat_policy names a
    # jax.checkpoint_policies member to keep some of them (e.g. 'dots_saveable').
    c.model.remat = False
    c.model.remat_policy = config_dict.placeholder(str)

    c.data = ml_collections.ConfigDict()
    c.data.source = "digits"  # digits | synthetic | folder:<path> | tfds:<name>
    c.data.data_dir = config_dict.placeholder(str)  # TFDS data dir (default ~/tensorflow_datasets)
    c.data.download = False  # let TFDS download datasets that allow it
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = config_dict.placeholder(int)  # default: the model's resolution
    c.data.eval_image_size = config_dict.placeholder(int)  # default: image_size
    c.data.crop_pct = config_dict.placeholder(float)  # default: the model's crop ratio
    c.data.channels = config_dict.placeholder(int)  # default: in-memory data: its own; files: model
    c.data.num_classes = config_dict.placeholder(int)  # synthetic data only
    c.data.train_pp = "inception_crop|flip|normalize"
    c.data.eval_pp = "resize_crop|normalize"
    c.data.mean = IMAGENET_MEAN
    c.data.std = IMAGENET_STD
    c.data.shuffle_buffer = 10_000
    c.data.cache = False  # cache decoded examples in memory (small datasets)
    # Folder sources: a truncated or non-image file is 'skip'ped (logged and counted) or an
    # 'error' naming the file (see cnnx.data.sources.FolderSource).
    c.data.on_corrupt = "skip"
    # Repeated augmentation (DeiT / torchvision RASampler, timm --aug-repeats): each image this
    # many times per batch, differently augmented; epochs keep their length (cnnx.data.repeated).
    c.data.repeated_augmentation = 1

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"  # one of OPTIMIZER_NAMES (cnnx.train.optim.OPTIMIZERS)
    c.optim.base_lr = 0.1  # per 256 images; scaled linearly with the global batch
    c.optim.momentum = 0.9
    c.optim.nesterov = False
    c.optim.weight_decay = 1e-4
    c.optim.decay_all = False  # False: no decay on biases and normalisation parameters
    # Kernels whose module path matches this regex get no decay (when decay_all is False).
    c.optim.decay_exclude = r"(bias|scale|bn|norm|embedding|token)"
    c.optim.grad_clip_norm = config_dict.placeholder(float)
    c.optim.rms_decay = 0.9
    c.optim.eps = 1e-8
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    # RMSProp's mean square starts here: 1.0 in TF1's RMSPropOptimizer and timm's RMSpropTF,
    # which EfficientNet and Inception v3 were trained with (Keras and torch start at 0).
    c.optim.rms_initial_scale = 1.0
    c.optim.trust_coefficient = 0.001  # LARS
    # Layer-wise lr decay (BEiT, timm --layer-decay): the head at the full rate, each depth
    # below it this times the one above (cnnx.train.layer_decay); None: one rate.
    c.optim.layer_decay = config_dict.placeholder(float)

    c.schedule = ml_collections.ConfigDict()
    c.schedule.name = "cosine"  # one of SCHEDULE_NAMES (cnnx.train.optim.SCHEDULES)
    c.schedule.warmup_epochs = 0.0
    c.schedule.end_lr_factor = 0.0  # cosine: final lr as a fraction of the peak
    c.schedule.decay_epochs = (30, 60, 90)  # step
    c.schedule.decay_factor = 0.1  # step, exponential
    c.schedule.decay_every_epochs = 2.4  # exponential
    # plateau: lr × decay_factor when eval/top1 has not improved by more than min_delta for
    # `patience` consecutive evaluations (AlexNet, VGG, ResNet papers).
    c.schedule.patience = 5
    c.schedule.min_delta = 0.0

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 256  # global, over all devices and hosts
    c.train.num_epochs = 90.0
    c.train.num_steps = config_dict.placeholder(int)  # overrides num_epochs
    # The loss, a key of cnnx.train.losses.LOSSES: 'softmax_xent' (softmax cross entropy) or
    # 'sigmoid_xent' (binary cross entropy per class: timm's BinaryCrossEntropy).
    c.train.loss = "softmax_xent"
    c.train.label_smoothing = 0.0
    # sigmoid_xent: targets above this become 1, the others 0 (timm's BCE target_threshold;
    # "ResNet strikes back" uses 0.2); None keeps them soft.
    c.train.bce_target_threshold = config_dict.placeholder(float)
    c.train.aux_loss_weight = 0.3  # auxiliary classifiers (GoogLeNet, Inception v3)
    c.train.ema_decay = config_dict.placeholder(float)  # EMA of weights when set
    c.train.ema_warmup = False  # TF's num_updates: decay min(ema_decay, (1+t)/(10+t))
    # Mixup / CutMix on device (timm semantics); 0 disables each.
    c.train.mixup_alpha = 0.0
    c.train.cutmix_alpha = 0.0
    c.train.mix_prob = 1.0  # probability that a batch is mixed
    c.train.mix_switch_prob = 0.5  # CutMix instead of Mixup when both are on
    c.train.grad_accum_steps = 1  # micro-batches per step (scanned inside the step)
    c.train.log_every_steps = 100
    # A non-finite loss or gradient: 'stop' (TrainingDiverged naming the step, last good
    # checkpoint kept) or 'skip' (that step's update is discarded, counted as train/skipped).
    c.train.on_nonfinite = "stop"
    # (first, count): a jax.profiler trace of `count` steps after the first `first` steps, in
    # <workdir>/profile for TensorBoard's profile tab, e.g. --config.train.profile_steps=10,5.
    c.train.profile_steps = config_dict.placeholder(tuple)
    # Knowledge distillation (cnnx.train.distill): 'soft' (Hinton: T² KL at distill_temperature)
    # or 'hard' (DeiT: the teacher's argmax as label), weighted distill_alpha against the label
    # loss; the frozen teacher from a cnnx workdir or torch weights of teacher_model.
    c.train.distill = "none"
    c.train.distill_alpha = 0.5
    c.train.distill_temperature = 1.0
    c.train.teacher_checkpoint = config_dict.placeholder(str)
    c.train.teacher_torch_weights = config_dict.placeholder(str)
    c.train.teacher_model = config_dict.placeholder(str)
    # Fine-tuning: regex of parameter paths that train (others frozen); None trains all.
    c.train.trainable = config_dict.placeholder(str)
    c.train.lr_mult_pattern = config_dict.placeholder(str)  # these train lr_mult times slower
    c.train.lr_mult = 0.1
    # Linear probe fast path: backbone features computed once, only the head trained on them
    # (needs a deterministic train_pp, a frozen backbone and init weights).
    c.train.fast_linear_probe = False

    # Where the starting weights come from (otherwise: random initialisation).
    c.init = ml_collections.ConfigDict()
    c.init.checkpoint = config_dict.placeholder(str)  # a cnnx workdir or checkpoints dir
    c.init.step = config_dict.placeholder(int)  # default: its newest checkpoint
    c.init.ema = False  # start from its EMA weights
    c.init.torch_weights = config_dict.placeholder(str)  # torchvision/timm .pth/.safetensors
    c.init.reset_head = False  # fresh classifier (new label set)
    c.init.head_pattern = config_dict.placeholder(str)  # what the head is (default: families')
    c.init.load_pattern = config_dict.placeholder(str)  # load only matching paths (bottom-up)

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 256
    c.eval.every_steps = config_dict.placeholder(int)  # default: once per epoch
    # More evaluators by name: `evals.<name> = cnnx.evaluate.entries.evaluator(...)`, each
    # with its data, cadence and options, logged as '<name>/top1', ... The eval split above is
    # always the evaluator 'eval'; an `evals.eval` entry changes its settings.
    c.evals = ml_collections.ConfigDict()

    c.ckpt = ml_collections.ConfigDict()
    c.ckpt.every_steps = config_dict.placeholder(int)  # default: once per epoch
    c.ckpt.max_to_keep = 3
    c.ckpt.asynchronous = True

    c.mesh = ml_collections.ConfigDict()
    # Mesh axes ('data', 'fsdp', 'model'); see cnnx/parallel/mesh.py and cnnx/parallel/sharding.py.
    c.mesh.data = -1  # devices on the 'data' axis; -1: all devices not used by fsdp × model
    c.mesh.fsdp = 1  # parameters and optimizer state sharded over these devices (FSDP/ZeRO-3)
    c.mesh.model = 1  # tensor parallelism: large kernels split over these devices
    # (at most two of data, fsdp, model may exceed 1: see cnnx/parallel/mesh.py)
    # Ordered (regex on the '/'-joined parameter path, spec) pairs; first match wins, the
    # rest get 'auto'. spec: a PartitionSpec-like tuple ('...' first aligns it to the last
    # dimensions), 'auto' or 'replicated'. E.g. (('head', 'replicated'), ('fc1', (None, 'fsdp'))).
    c.mesh.rules = ()
    c.mesh.fsdp_min_size = 2**18  # 'auto' keeps parameters with fewer elements replicated
    return c


# --- Validation: every value is checked before anything is built or compiled. ---------------
# Each rule returns None for a good value, otherwise what is allowed. `validate` applies the
# rules of the keys a config has (recipes may lack optional ones) and reports every bad value
# at once, so a fuzzed or mistyped override fails in milliseconds with a message, never deep
# inside tf.data, optax or XLA. Keys of the `mesh` section are checked by cnnx.parallel.mesh.


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _int(lo: int | None = None, hi: int | None = None, optional: bool = False):
    def check(v):
        if v is None and optional:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            return "an integer" + (" or unset" if optional else "")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            return f"an integer {bounds}" + (" (or unset)" if optional else "")
        return None

    return check


def _float(lo=None, hi=None, lo_open=False, hi_open=False, optional=False):
    def check(v):
        if v is None and optional:
            return None
        bad = (
            not _is_number(v)
            or not math.isfinite(v)
            or (lo is not None and (v <= lo if lo_open else v < lo))
            or (hi is not None and (v >= hi if hi_open else v > hi))
        )
        if not bad:
            return None
        left = "" if lo is None else ("(" if lo_open else "[") + f"{lo}"
        right = "" if hi is None else f"{hi}" + (")" if hi_open else "]")
        where = (
            f"in {left}, {right}"
            if lo is not None and hi is not None
            else f"{'>' if lo_open else '>='} {lo}"
            if lo is not None
            else "finite"
        )
        return f"a finite number {where}" + (" (or unset)" if optional else "")

    return check


def _choice(*options):
    def check(v):
        return None if v in options else f"one of {', '.join(map(repr, options))}"

    return check


def _regex(v):
    if v is None:
        return None
    try:
        re.compile(v)
    except (re.error, TypeError) as e:
        return f"a valid regular expression ({e})"
    return None


def _numbers(positive: bool = False, non_negative: bool = False, min_len: int = 0):
    def check(v):
        ok = isinstance(v, tuple | list) and len(v) >= min_len
        ok = ok and all(_is_number(x) and math.isfinite(x) for x in v)
        ok = ok and not (positive and any(x <= 0 for x in v))
        ok = ok and not (non_negative and any(x < 0 for x in v))
        if ok:
            return None
        what = "positive " if positive else "non-negative " if non_negative else ""
        return f"a tuple of {min_len or 'zero'} or more finite {what}numbers, e.g. (0.5,)"

    return check


def _profile_steps(v):
    if v is None:
        return None
    if (
        isinstance(v, tuple | list)
        and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        and v[0] >= 0
        and v[1] >= 1
    ):
        return None
    return "(first, count): trace `count` >= 1 steps after the first `first` >= 0, e.g. 10,5"


def _non_empty_str(v):
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def _source(v):
    if isinstance(v, str) and v.partition(":")[0] in SOURCE_KINDS:
        return None
    return "'digits' (or 'digits:<task>'), 'synthetic', 'folder:<path>' or 'tfds:<name>'"


_PROB = _float(0.0, 1.0)
_RULES = {
    "seed": _int(0, 2**31 - 1),
    "model.name": _non_empty_str,
    "model.width_mult": _float(0.0, lo_open=True),
    "model.depth_mult": _float(0.0, lo_open=True),
    "model.dropout_rate": _float(0.0, 1.0, hi_open=True, optional=True),
    "model.drop_path_rate": _float(0.0, 1.0, hi_open=True, optional=True),
    "model.num_classes": _int(1, optional=True),
    "model.dtype": _choice("auto", "float32", "bfloat16", "float16"),
    "data.source": _source,
    "data.image_size": _int(1, optional=True),
    "data.eval_image_size": _int(1, optional=True),
    "data.crop_pct": _float(0.0, lo_open=True, optional=True),
    "data.channels": _int(1, optional=True),
    "data.num_classes": _int(1, optional=True),
    "data.mean": _numbers(min_len=1),
    "data.std": _numbers(positive=True, min_len=1),
    "data.shuffle_buffer": _int(1),
    "data.repeated_augmentation": _int(1),
    "data.on_corrupt": _choice("skip", "error"),
    "optim.name": _choice(*OPTIMIZER_NAMES),
    "optim.base_lr": _float(0.0),
    "optim.momentum": _float(0.0, 1.0, hi_open=True),
    "optim.weight_decay": _float(0.0),
    "optim.decay_exclude": _regex,
    "optim.grad_clip_norm": _float(0.0, lo_open=True, optional=True),
    "optim.rms_decay": _PROB,
    "optim.eps": _float(0.0),
    "optim.b1": _float(0.0, 1.0, hi_open=True),
    "optim.b2": _float(0.0, 1.0, hi_open=True),
    "optim.rms_initial_scale": _float(0.0),
    "optim.trust_coefficient": _float(0.0, lo_open=True),
    "optim.layer_decay": _float(0.0, 1.0, lo_open=True, optional=True),
    "schedule.name": _choice(*SCHEDULE_NAMES),
    "schedule.warmup_epochs": _float(0.0),
    "schedule.end_lr_factor": _float(0.0),
    "schedule.decay_epochs": _numbers(non_negative=True),
    "schedule.decay_factor": _float(0.0, lo_open=True),
    "schedule.decay_every_epochs": _float(0.0, lo_open=True),
    "schedule.patience": _int(0),
    "schedule.min_delta": _float(0.0),
    "train.batch_size": _int(1),
    "train.num_epochs": _float(0.0, lo_open=True),
    "train.num_steps": _int(1, optional=True),
    "train.loss": _choice(*LOSS_NAMES),
    "train.label_smoothing": _float(0.0, 1.0, hi_open=True),
    "train.aux_loss_weight": _float(0.0),
    "train.ema_decay": _float(0.0, 1.0, optional=True),
    "train.mixup_alpha": _float(0.0),
    "train.cutmix_alpha": _float(0.0),
    "train.mix_prob": _PROB,
    "train.mix_switch_prob": _PROB,
    "train.grad_accum_steps": _int(1),
    "train.bce_target_threshold": _float(0.0, 1.0, hi_open=True, optional=True),
    "train.distill": _choice("none", "soft", "hard"),
    "train.distill_alpha": _PROB,
    "train.distill_temperature": _float(0.0, lo_open=True),
    "train.log_every_steps": _int(1),
    "train.trainable": _regex,
    "train.lr_mult_pattern": _regex,
    "train.lr_mult": _float(0.0),
    "train.on_nonfinite": _choice("stop", "skip"),
    "train.profile_steps": _profile_steps,
    "init.step": _int(0, optional=True),
    "init.head_pattern": _regex,
    "init.load_pattern": _regex,
    "eval.batch_size": _int(1),
    "eval.every_steps": _int(1, optional=True),
    "ckpt.every_steps": _int(1, optional=True),
    "ckpt.max_to_keep": _int(1),
}


_MISSING = object()


def _lookup(config, key: str):
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return _MISSING
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the values of a config against the schema's rules.

    Raises:
      ConfigError: naming every bad `--config.<key>=<value>` and what it must be.
    """
    problems = []
    for key, rule in _RULES.items():
        value = _lookup(config, key)
        if value is _MISSING:
            continue
        why = rule(value)
        if why:
            problems.append(f"--config.{key}={value!r} must be {why}")
    accum, batch = _lookup(config, "train.grad_accum_steps"), _lookup(config, "train.batch_size")
    if not problems and accum is not _MISSING and batch is not _MISSING and batch % accum:
        problems.append(
            f"--config.train.grad_accum_steps={accum} must divide --config.train.batch_size="
            f"{batch} (each micro-batch is batch_size / grad_accum_steps examples)"
        )
    if problems:
        raise ConfigError("Invalid config: " + "; ".join(problems) + ".")
