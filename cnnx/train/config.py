"""The config schema: every field a cnnx config has, with its default.

Recipe files in configs/ start from `base_config()` and change values; since configs are
loaded locked, a field that is not here cannot be set (a misspelled override is an error).
Optional values are typed placeholders (None until set), so overrides still type-check.
"""

import ml_collections
from ml_collections import config_dict

from cnnx.data.preprocess import IMAGENET_MEAN, IMAGENET_STD


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Model: `name` from the registry; everything else is passed to its constructor.
    c.model = ml_collections.ConfigDict()
    c.model.name = "lenet5"
    c.model.width_mult = 1.0
    c.model.depth_mult = 1.0
    c.model.dropout_rate = config_dict.placeholder(float)
    c.model.dtype = "float32"

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

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"  # sgd | rmsprop | adamw | lamb | lars
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
    c.optim.rms_initial_scale = 1.0  # TF1 RMSPropOptimizer starts the mean square at 1.0
    c.optim.trust_coefficient = 0.001  # LARS

    c.schedule = ml_collections.ConfigDict()
    c.schedule.name = "cosine"  # constant | cosine | step | exponential | plateau
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
    c.train.label_smoothing = 0.0
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

    c.ckpt = ml_collections.ConfigDict()
    c.ckpt.every_steps = config_dict.placeholder(int)  # default: once per epoch
    c.ckpt.max_to_keep = 3
    c.ckpt.asynchronous = True

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # devices on the 'data' axis; -1: all devices of all hosts
    return c


def smoke(c: ml_collections.ConfigDict, image_size: int | None = None) -> ml_collections.ConfigDict:
    """Turns any recipe into a seconds-long run on synthetic data (the `:smoke` arg)."""
    c.data.source = "synthetic"
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.num_classes = 10
    c.data.image_size = image_size
    c.data.cache = True
    c.data.shuffle_buffer = 512
    c.train.batch_size = 16
    c.eval.batch_size = 16
    c.train.num_steps = 6
    c.train.num_epochs = 1.0
    c.train.log_every_steps = 2
    c.eval.every_steps = 1000
    c.ckpt.every_steps = 1000
    c.schedule.warmup_epochs = 0.0
    c.model.dtype = "float32"
    return c
