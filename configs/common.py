"""What many config files share: the `:arg` parser, the bundled-digits data block and the
`:smoke` variant.

Modelled on big_vision's configs/common.py (`parse_arg`). Config files import it as
`configs.common`; train.py, eval.py, the scripts and the tests run with the repository root on
`sys.path`.
"""

import types

import ml_collections

from cnnx.evaluate import named_sets  # imports neither TensorFlow nor JAX

# scikit-learn's handwritten digits (cnnx.data.sources): 1,438 training and 359 test images of
# 8×8 grey pixels, upsampled to the model's resolution.
DIGITS_TRAIN_EXAMPLES = 1438

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def _convert(name: str, text: str, like):
    """`text` typed like the default `like` (bool, int, float or str)."""
    try:
        if isinstance(like, bool):
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(text)
            return text.lower() in _TRUE
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}[type(like)]
        raise ValueError(f"config arg {name}={text!r} must be {kind}") from None
    return text


def parse_arg(arg: str | None, **typed_defaults) -> types.SimpleNamespace:
    """Parses a config file's `:arg` (`--config=configs/x.py:ARG`) into typed values.

    ARG is comma-separated. Each item is `name=value` (the value converted to the type of that
    name's default), or a bare `name` of a bool option (sets it True), or, as the first item
    only, a bare value for the first option when that option is not a bool (the variant:
    `resnet.py:50,paper`, `efficientnet.py:b3,tf`).

    Args:
      arg: the text after ':' (None or '' leaves every default).
      **typed_defaults: option name -> default; the default's type (bool, int, float, str) is
        the option's type, and the first option is the positional one.

    Returns:
      A namespace with one attribute per option.

    Raises:
      ValueError: an unknown option (naming the known ones), a value of the wrong type, or an
        option given twice.
    """
    names = list(typed_defaults)
    values = dict(typed_defaults)
    seen = set()
    for index, item in enumerate(filter(None, (arg or "").split(","))):
        if "=" in item:
            name, text = item.split("=", 1)
        elif item in typed_defaults and isinstance(typed_defaults[item], bool):
            name, text = item, "true"
        elif index == 0 and names and not isinstance(typed_defaults[names[0]], bool):
            name, text = names[0], item
        else:
            name, text = item, None
        if name not in typed_defaults:
            raise ValueError(
                f"unknown config arg {item!r} in {arg!r}; options: "
                + ", ".join(f"{n}={typed_defaults[n]!r}" for n in names)
            )
        if name in seen:
            raise ValueError(f"config arg {name!r} given twice in {arg!r}")
        seen.add(name)
        values[name] = _convert(name, text, typed_defaults[name])
    return types.SimpleNamespace(**values)


def digits_data(
    c: ml_collections.ConfigDict,
    *,
    padding: int = 2,
    shuffle_buffer: int = 2048,
) -> ml_collections.ConfigDict:
    """Sets `c.data` to the bundled digits: small random translations, grey-level mean/std 0.5.

    The digits are tiny and centred, so a random crop of the image padded by `padding` pixels
    is the augmentation; evaluation resizes only. The examples are cached in memory, and the
    default shuffle buffer holds the whole training split. Resolution and channels stay as
    the caller sets them (default: the model's resolution, the data's one channel).

    Args:
      c: a config from `base_config()`, changed in place.
      padding: pixels of random translation at training.
      shuffle_buffer: tf.data shuffle buffer (any value >= 1,438 shuffles the whole split).

    Returns:
      `c`, for chaining.
    """
    c.data.source = "digits"
    c.data.train_pp = f"random_crop(padding={padding})|normalize"
    c.data.eval_pp = "resize|normalize"
    c.data.mean = (0.5,)
    c.data.std = (0.5,)
    c.data.cache = True
    c.data.shuffle_buffer = shuffle_buffer
    return c


def eval_every_epochs(c: ml_collections.ConfigDict, epochs: float) -> ml_collections.ConfigDict:
    """Evaluates every `epochs` epochs of the digits training split (and at the end).

    On the digits an evaluation costs about as much as an epoch of training, so evaluating
    every epoch doubles a run; a few evaluations per run are enough to follow it.
    """
    steps_per_epoch = DIGITS_TRAIN_EXAMPLES // c.train.batch_size
    c.eval.every_steps = max(1, round(epochs * steps_per_epoch))
    return c


def smoke(
    c: ml_collections.ConfigDict, image_size: int | None = None, model: str | None = None
) -> ml_collections.ConfigDict:
    """Turns any recipe into a short run on synthetic data (the `:smoke` arg): a few steps,
    about a minute on a CPU, mostly compilation.

    Args:
      c: the recipe's config, changed in place.
      image_size: the synthetic images' resolution (None: the model's).
      model: how the recipe shrinks its model, if it does (e.g. 'one block per stage'); with
        the data it makes `c.smoke`, which the final summary line prints.

    Returns:
      `c`, for chaining.
    """
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
    c.smoke = ", ".join(filter(None, ("synthetic data", model, "a few steps")))
    return c


# The ImageNet test sets (through TFDS) and their label rules: cnnx.evaluate.named_sets, the one
# table config files and eval.py's --evals share.
IMAGENET_TEST_SETS = named_sets.IMAGENET_TEST_SETS


def imagenet_test_sets(
    c: ml_collections.ConfigDict, every_epochs: float | None = None, names=None
) -> ml_collections.ConfigDict:
    """Adds the ImageNet test sets (`IMAGENET_TEST_SETS`) to an ImageNet config as evaluators,
    each evaluated with the run's eval preprocessing, resolution and crop, and logged as
    '<name>/top1', ... (`python eval.py --workdir=DIR --evals=v2_matched,real` on a finished
    run). TFDS downloads V2, A, R and Sketch with --config.data.download=True; ReaL needs
    ImageNet's validation tar.

    Args:
      c: an ImageNet-1k config, changed in place.
      every_epochs: how often they run (None: only after the last step).
      names: only these sets (default: all).

    Returns:
      `c`, for chaining.
    """
    for name in names or IMAGENET_TEST_SETS:
        c.evals[name] = named_sets.named_entry(name, every_epochs)
    return c
