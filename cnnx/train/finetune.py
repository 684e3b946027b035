"""Fine-tuning: initialise from other weights, replace the head, freeze or slow down layers.

Configured by the `init` section (where the starting weights come from) and by
`train.trainable` / `train.lr_mult_pattern` / `train.lr_mult` (which parameters move and how
fast). Parameter paths are '/'-joined module names, e.g. `stage4_block2/conv3/conv/kernel`,
`head/fc/kernel`; patterns are regular expressions searched in those paths.
"""

import contextlib
import math
import re

import jax
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import traverse_util

from cnnx.errors import CheckpointError, ConfigError

# Classifier layers of the families (cnnx names): replaced when the class count changes.
DEFAULT_HEAD_PATTERN = r"^(head|output|aux\d*)(/|$)|^aux_"


def _paths(tree) -> dict[str, object]:
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def partition_optimizer(
    tx: optax.GradientTransformation,
    trainable: str | None,
    lr_mult_pattern: str | None = None,
    lr_mult: float = 1.0,
) -> optax.GradientTransformation:
    """Wraps an optimizer so that only `trainable` parameters move, and parameters matching
    `lr_mult_pattern` move `lr_mult` times slower.

    Frozen parameters get `optax.set_to_zero()`: their values stay bit-identical and they
    carry no optimizer state (momentum buffers) at all.
    """
    if not trainable and not lr_mult_pattern:
        return tx
    transforms = {"train": tx, "frozen": optax.set_to_zero()}
    if lr_mult_pattern:
        transforms["slow"] = optax.chain(tx, optax.scale(lr_mult))

    def labels(params):
        flat = traverse_util.flatten_dict(params)
        train_re = re.compile(trainable) if trainable else None
        slow_re = re.compile(lr_mult_pattern) if lr_mult_pattern else None
        out = {}
        for k in flat:
            path = "/".join(k)
            if train_re is not None and not train_re.search(path):
                out[k] = "frozen"
            elif slow_re is not None and slow_re.search(path):
                out[k] = "slow"
            else:
                out[k] = "train"
        if not any(v != "frozen" for v in out.values()):
            raise ConfigError(
                f"--config.train.trainable={trainable!r} matches no parameter; paths look "
                f"like {', '.join(list(map('/'.join, flat))[:3])}."
            )
        return traverse_util.unflatten_dict(out)

    return optax.multi_transform(transforms, labels)


def load_source_variables(init_cfg, model_name: str) -> dict:
    """The variables to start from: a cnnx checkpoint or a torchvision/timm weights file."""
    from cnnx.train.checkpoint import load_variables

    if init_cfg.checkpoint:
        return load_variables(init_cfg.checkpoint, init_cfg.step, ema=init_cfg.ema)
    from cnnx import convert, models

    head = models.get_spec(model_name).num_classes
    return convert.from_torch(
        model_name, read_torch_state_dict(init_cfg.torch_weights), num_classes=head
    )


def read_torch_state_dict(path: str) -> dict:
    """A torchvision / timm weights file (torch.save or .safetensors; local or gs://) as a
    state dict (a checkpoint's 'state_dict' entry when it has one)."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import load

        return load(epath.Path(path).read_bytes())
    import torch

    with epath.Path(path).open("rb") as f:
        state_dict = torch.load(f, map_location="cpu", weights_only=True)
    return state_dict.get("state_dict", state_dict)


def adapt_input_conv(kernel: np.ndarray, in_chans: int) -> np.ndarray:
    """An input convolution's HWIO kernel for `in_chans` input channels (timm's rule).

    timm's `adapt_input_conv` (timm/models/_manipulate.py): for one channel the RGB kernels
    are summed (a grey image fed to the sum gives what the RGB model gave for that grey
    image repeated in R, G and B); for other counts the RGB kernels are repeated to fill the
    channels and scaled by 3 / in_chans, so that the response to an image repeated over the
    channels keeps its size. Space-to-depth stems (3·k input channels) become k channels by
    summing each RGB triple.

    Args:
      kernel: (H, W, I, O) float kernel of the source's first convolution.
      in_chans: input channels of the model being trained.

    Returns:
      (H, W, in_chans, O), in the kernel's dtype.

    Raises:
      ConfigError: a kernel whose input channels are not RGB (3, or 3·k for one channel).
    """
    kernel = np.asarray(kernel)
    dtype, k = kernel.dtype, kernel.astype(np.float32)
    i = k.shape[2]
    if in_chans == i:
        return kernel
    if in_chans == 1 and i % 3 == 0:
        k = k.reshape(*k.shape[:2], i // 3, 3, k.shape[3]).sum(axis=3)
    elif i == 3:
        repeat = math.ceil(in_chans / 3)
        k = np.tile(k, (1, 1, repeat, 1))[:, :, :in_chans] * (3.0 / in_chans)
    else:
        raise ConfigError(
            f"Cannot adapt a first convolution with {i} input channels to {in_chans}: only "
            "RGB (3-channel) kernels are adapted."
        )
    return k.astype(dtype)


def _input_conv_path(target_params, source_params) -> tuple[str, ...] | None:
    """The key of the one kernel that differs from the source only in its input channels,
    the source's being RGB (3): the input convolution (stem, patch embedding) of a model
    built for other image channels. None when there is no such kernel or more than one
    (then it is not a channel change of the input, and the shapes are reported)."""
    src = traverse_util.flatten_dict(source_params)
    keys = [
        key
        for key, value in traverse_util.flatten_dict(target_params).items()
        if key in src
        and _differs_in_input_channels(np.shape(src[key]), np.shape(value))
        and np.shape(src[key])[2] % 3 == 0
    ]
    return keys[0] if len(keys) == 1 else None


def merge_variables(
    target: dict, source: dict, *, load_pattern: str | None, reset_head: bool, head_pattern: str
) -> tuple[dict, list[str], list[str]]:
    """Copies `source` leaves into `target` where paths and shapes agree.

    The input convolution (the stem) is adapted to the model's input channels where the two
    differ only there (RGB weights on grey digits: `adapt_input_conv`, as timm does); it is
    the one kernel whose shapes differ only in input channels, from 3 (or 3·k).

    Args:
      target: freshly initialised {'params', 'batch_stats'} of the model to train.
      source: variables to start from.
      load_pattern: only paths matching it are loaded (bottom-up loading, e.g.
        'stem|stage1|stage2'); None loads everything.
      reset_head: keep the fresh head (for a new label set) instead of loading it.
      head_pattern: what counts as the head.

    Returns:
      (merged variables, loaded paths, paths kept fresh).

    Raises:
      CheckpointError: listing every non-head tensor that is missing or has another shape
        (not only the first), each with what would fix it.
    """
    merged, loaded, fresh, problems = {}, [], [], []
    head_re = re.compile(head_pattern)
    load_re = re.compile(load_pattern) if load_pattern else None
    input_conv = _input_conv_path(target.get("params") or {}, source.get("params") or {})
    for collection in ("params", "batch_stats"):
        tgt = traverse_util.flatten_dict(target.get(collection) or {})
        src = traverse_util.flatten_dict(source.get(collection) or {})
        out = {}
        for key, value in tgt.items():
            path = "/".join(key)
            name = f"{collection}/{path}"
            is_head = bool(head_re.search(path))
            if (reset_head and is_head) or (load_re is not None and not load_re.search(path)):
                out[key] = value
                fresh.append(name)
            elif key not in src:
                problems.append(f"{name}: missing in the source weights")
            elif collection == "params" and key == input_conv:
                try:
                    adapted = adapt_input_conv(src[key], value.shape[2])
                except ConfigError as e:
                    problems.append(f"{name}: {e} {_fresh_hint(path)}")
                    continue
                out[key] = np.asarray(adapted, dtype=value.dtype)
                loaded.append(name)
                logging.info(
                    "Adapted %s from %d to %d input channels (timm's adapt_input_conv)",
                    name,
                    np.shape(src[key])[2],
                    value.shape[2],
                )
            elif tuple(np.shape(src[key])) != tuple(value.shape):
                hint = " (set --config.init.reset_head=True)" if is_head else _fresh_hint(path)
                problems.append(
                    f"{name}: source {tuple(np.shape(src[key]))} vs model {tuple(value.shape)}"
                    + hint
                )
            else:
                out[key] = np.asarray(src[key], dtype=value.dtype)
                loaded.append(name)
        merged[collection] = traverse_util.unflatten_dict(out) if out else {}
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CheckpointError(
            f"The initial weights do not fit the model ({len(problems)} tensors):\n  "
            + "\n  ".join(problems[:20])
            + more
        )
    return merged, loaded, fresh


def _differs_in_input_channels(source_shape, target_shape) -> bool:
    """Two HWIO kernel shapes equal but for the input channels (axis 2)."""
    s, t = tuple(source_shape), tuple(target_shape)
    return len(s) == len(t) == 4 and s[2] != t[2] and s[:2] + s[3:] == t[:2] + t[3:]


def _fresh_hint(path: str) -> str:
    """How to leave one parameter's module fresh instead of loading it."""
    module = re.escape(path.rsplit("/", 1)[0])
    return f" (to keep it fresh: --config.init.load_pattern='^(?!{module}/)')"


def initialize_from(state, init_cfg, model_name: str, shardings):
    """Returns `state` with weights from `init_cfg` (optimizer state re-initialised)."""
    source = load_source_variables(init_cfg, model_name)
    target = {"params": state.params, "batch_stats": state.batch_stats}
    host_target = jax.device_get(target)
    merged, loaded, fresh = merge_variables(
        host_target,
        source,
        load_pattern=init_cfg.load_pattern,
        reset_head=init_cfg.reset_head,
        head_pattern=init_cfg.head_pattern or DEFAULT_HEAD_PATTERN,
    )
    logging.info(
        "Initialised %d tensors from weights; %d left fresh: %s",
        len(loaded),
        len(fresh),
        fresh[:10],
    )
    params = merged["params"]
    batch_stats = merged["batch_stats"] or state.batch_stats
    new = state.replace(
        params=params,
        batch_stats=batch_stats,
        opt_state=state.tx.init(params),
        ema_params=params if state.ema_params is not None else None,
        ema_batch_stats=batch_stats if state.ema_batch_stats is not None else None,
    )
    return jax.device_put(new, shardings)


def init_config_problems(init_cfg) -> list[str]:
    """Every problem of the `init` section that shows before loading anything (all of them,
    not the first): both sources set, a weights file or checkpoint directory not there."""
    problems = []
    if init_cfg.checkpoint and init_cfg.torch_weights:
        problems.append("set only one of --config.init.checkpoint and --config.init.torch_weights")
    if init_cfg.torch_weights and not epath.Path(init_cfg.torch_weights).exists():
        problems.append(
            f"--config.init.torch_weights={init_cfg.torch_weights}: no such file. Download the "
            "torchvision / timm weights (.pth or .safetensors) and pass their path"
        )
    if init_cfg.checkpoint and not epath.Path(init_cfg.checkpoint).is_dir():
        problems.append(
            f"--config.init.checkpoint={init_cfg.checkpoint}: no such directory (a cnnx workdir "
            "or its checkpoints/ directory)"
        )
    return problems


def _raise_all(problems: list[str]) -> None:
    problems = [p.rstrip(".") for p in problems]
    if len(problems) == 1:
        raise ConfigError(problems[0][0].upper() + problems[0][1:] + ".")
    if problems:
        raise ConfigError(
            f"{len(problems)} problems with the initial weights:\n  - " + "\n  - ".join(problems)
        )


def check_init_config(init_cfg) -> None:
    """Fails before any compilation when the initial weights cannot be found.

    Raises:
      ConfigError: naming every problem of `init_config_problems` at once.
    """
    _raise_all(init_config_problems(init_cfg))


def check_init(config, model_name: str) -> None:
    """`check_init_config` and `check_init_normalization` together: one error naming every
    problem of the initial weights' settings, before anything is loaded or compiled.

    Raises:
      ConfigError: listing all of them.
    """
    problems = init_config_problems(config.init)
    normalization = normalization_problem(config, model_name)
    _raise_all(problems + ([normalization] if normalization else []))


def _normalization_of_checkpoint(path: str) -> tuple[tuple, tuple, str] | None:
    """(mean, std, where from) of the run whose checkpoints `path` holds; None if unknown."""
    from cnnx.train import workdir as wd

    root = path.rstrip("/")
    if root.rsplit("/", 1)[-1] == wd.CHECKPOINTS:  # the checkpoints/ folder itself
        root = root.rsplit("/", 1)[0]
    saved = wd.load_saved_config(root)
    data = (saved or {}).get("data") or {}
    if "mean" not in data or "std" not in data:
        return None
    return tuple(data["mean"]), tuple(data["std"]), f"the run in {root} was trained with them"


def check_init_normalization(config, model_name: str) -> None:
    """Fails before training when the initial weights expect another input normalisation
    (see `normalization_problem`).

    Raises:
      ConfigError: naming both normalisations and the overrides that make them agree.
    """
    problem = normalization_problem(config, model_name)
    if problem:
        raise ConfigError(problem)


def normalization_problem(config, model_name: str) -> str | None:
    """Why the initial weights expect another input normalisation than the config's; None
    when they agree (or nothing is loaded).

    Weights learn features of inputs normalised one way; fed inputs normalised another way
    (ImageNet mean/std where torchvision's `transform_input` or timm's `pretrained_cfg`
    means 0.5/0.5, or another cnnx run's statistics), they start from shifted features while
    everything looks normal. `init.checkpoint`: the source run's `config.json` (a converted
    workdir holds the reference's normalisation). `init.torch_weights`: the reference's
    (`cnnx.convert.input_normalization`); for references with a `transform_input` flag both
    of its settings are accepted, since a weights file does not say which made it. RGB
    weights on one-channel data (their stem is summed over RGB when loaded,
    `adapt_input_conv`) expect about the channel averages of the RGB mean and std; other
    channel counts are not compared.
    """
    init = config.init
    if init.checkpoint:
        found = _normalization_of_checkpoint(init.checkpoint)
        expected = [found] if found else []
        source = f"--config.init.checkpoint={init.checkpoint}"
    elif init.torch_weights:
        from cnnx import convert

        expected = [convert.input_normalization(model_name)]
        # A reference without a transform_input flag has one normalisation only.
        with contextlib.suppress(convert.ConversionError):
            expected.append(convert.input_normalization(model_name, transform_input=False))
        source = f"--config.init.torch_weights={init.torch_weights}"
    else:
        return None
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    if len(mean) == len(std) == 1:  # grey data, RGB weights: the summed stem sees the average
        expected += [
            (
                (round(float(np.mean(m)), 4),),
                (round(float(np.mean(s)), 4),),
                f"{why}, averaged over RGB for the summed one-channel stem",
            )
            for m, s, why in expected
            if len(m) == len(s) == 3
        ]
    comparable = [e for e in expected if len(e[0]) == len(mean) and len(e[1]) == len(std)]
    if not comparable or any(
        np.allclose(mean, m, atol=1e-3 if len(m) == 1 else 1e-6)
        and np.allclose(std, s, atol=1e-3 if len(s) == 1 else 1e-6)
        for m, s, _ in comparable
    ):
        return None
    want_mean, want_std, why = comparable[0]
    return (
        f"{source} expects inputs normalised with mean {list(want_mean)} and std "
        f"{list(want_std)} ({why}), but this config normalises with mean {list(mean)} and "
        f"std {list(std)}: the weights would start from features of other inputs. Pass "
        f"--config.data.mean='{tuple(float(v) for v in want_mean)}' "
        f"--config.data.std='{tuple(float(v) for v in want_std)}'."
    )
