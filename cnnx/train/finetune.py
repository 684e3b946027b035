"""Fine-tuning: initialise from other weights, replace the head, freeze or slow down layers.

Configured by the `init` section (where the starting weights come from) and by
`train.trainable` / `train.lr_mult_pattern` / `train.lr_mult` (which parameters move and how
fast). Parameter paths are '/'-joined module names, e.g. `stage4_block2/conv3/conv/kernel`,
`head/fc/kernel`; patterns are regular expressions searched in those paths.
"""

import contextlib
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


def path_labels(params, pattern: str, yes: str, no: str):
    """A pytree of labels: `yes` where the parameter path matches `pattern`, else `no`."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"Bad parameter pattern {pattern!r}: {e}") from None
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict(
        {k: (yes if regex.search("/".join(k)) else no) for k in flat}
    )


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
    path = init_cfg.torch_weights
    if path.endswith(".safetensors"):
        from safetensors.numpy import load

        state_dict = load(epath.Path(path).read_bytes())
    else:
        import torch

        with epath.Path(path).open("rb") as f:  # local or gs://
            state_dict = torch.load(f, map_location="cpu", weights_only=True)
        state_dict = state_dict.get("state_dict", state_dict)
    from cnnx import convert, models

    head = models.get_spec(model_name).num_classes
    return convert.from_torch(model_name, state_dict, num_classes=head)


def merge_variables(
    target: dict, source: dict, *, load_pattern: str | None, reset_head: bool, head_pattern: str
) -> tuple[dict, list[str], list[str]]:
    """Copies `source` leaves into `target` where paths and shapes agree.

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
      CheckpointError: a non-head tensor is missing or has another shape.
    """
    merged, loaded, fresh, problems = {}, [], [], []
    head_re = re.compile(head_pattern)
    load_re = re.compile(load_pattern) if load_pattern else None
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
            elif tuple(np.shape(src[key])) != tuple(value.shape):
                hint = " (set --config.init.reset_head=True)" if is_head else ""
                problems.append(
                    f"{name}: source {tuple(np.shape(src[key]))} vs model {tuple(value.shape)}"
                    + hint
                )
            else:
                out[key] = np.asarray(src[key], dtype=value.dtype)
                loaded.append(name)
        merged[collection] = traverse_util.unflatten_dict(out) if out else {}
    if problems:
        raise CheckpointError(
            "The initial weights do not fit the model:\n  " + "\n  ".join(problems[:20])
        )
    return merged, loaded, fresh


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


def check_init_config(init_cfg) -> None:
    """Fails before any compilation when the initial weights cannot be found (local or gs://).

    Raises:
      ConfigError: both sources are set, or the one set does not exist.
    """
    if init_cfg.checkpoint and init_cfg.torch_weights:
        raise ConfigError(
            "Set only one of --config.init.checkpoint and --config.init.torch_weights."
        )
    if init_cfg.torch_weights and not epath.Path(init_cfg.torch_weights).exists():
        raise ConfigError(
            f"--config.init.torch_weights={init_cfg.torch_weights}: no such file. Download the "
            "torchvision / timm weights (.pth or .safetensors) and pass their path."
        )
    if init_cfg.checkpoint and not epath.Path(init_cfg.checkpoint).is_dir():
        raise ConfigError(
            f"--config.init.checkpoint={init_cfg.checkpoint}: no such directory (a cnnx workdir "
            "or its checkpoints/ directory)."
        )


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
    """Fails before training when the initial weights expect another input normalisation.

    Weights learn features of inputs normalised one way; fed inputs normalised another way
    (ImageNet mean/std where torchvision's `transform_input` or timm's `pretrained_cfg`
    means 0.5/0.5, or another cnnx run's statistics), they start from shifted features while
    everything looks normal. `init.checkpoint`: the source run's `config.json` (a converted
    workdir holds the reference's normalisation). `init.torch_weights`: the reference's
    (`cnnx.convert.input_normalization`); for references with a `transform_input` flag both
    of its settings are accepted, since a weights file does not say which made it. Channel
    counts that differ are left to the weight loading, which refuses them.

    Raises:
      ConfigError: naming both normalisations and the overrides that make them agree.
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
        return
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    comparable = [e for e in expected if len(e[0]) == len(mean) and len(e[1]) == len(std)]
    if not comparable or any(
        np.allclose(mean, m, atol=1e-6) and np.allclose(std, s, atol=1e-6) for m, s, _ in comparable
    ):
        return
    want_mean, want_std, why = comparable[0]
    raise ConfigError(
        f"{source} expects inputs normalised with mean {list(want_mean)} and std "
        f"{list(want_std)} ({why}), but this config normalises with mean {list(mean)} and "
        f"std {list(std)}: the weights would start from features of other inputs. Pass "
        f"--config.data.mean='{tuple(want_mean)}' --config.data.std='{tuple(want_std)}'."
    )
