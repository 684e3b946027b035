"""Everything a config implies before the first step: data source, model, mesh, shapes.

Shared by training and evaluation, and done before any compilation so that bad input (unknown
model, missing data, a batch that does not split over the devices) fails in seconds with a
clear message.
"""

import copy
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from cnnx import models
from cnnx.backends import chips
from cnnx.config_schema import validate
from cnnx.data import PPContext, Source, get_source
from cnnx.errors import ConfigError
from cnnx.evaluate import entries
from cnnx.layers.remat import POLICIES as REMAT_POLICIES
from cnnx.models.coverage import unused_input_positions
from cnnx.models.registry import ModelSpec, as_registered
from cnnx.parallel.mesh import check_batch, mesh_from_config
from cnnx.parallel.sharding import parse_rules

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# Model options that leave the layers' strides, kernels and patches as registered.
_GEOMETRY_NEUTRAL = frozenset(
    {"num_classes", "dtype", "param_dtype", "dropout_rate", "drop_path_rate", "remat"}
)
# Config keys of the `model` section that are not model constructor arguments.
_NOT_MODEL_ARGS = ("name",)


@dataclasses.dataclass
class Experiment:
    config: ml_collections.ConfigDict
    spec: ModelSpec
    source: Source
    model: object
    mesh: Mesh
    image_size: int
    eval_image_size: int
    crop_pct: float
    channels: int
    # Input sizes `check_input_size` has passed for this model.
    checked_sizes: set[int] = dataclasses.field(default_factory=set)
    # model.dtype as the user gave it ('auto'), where the trainer resolved it.
    dtype_requested: str | None = None

    def pp_context(self, train: bool, image_size: int | None = None) -> PPContext:
        """Preprocessing settings; a size other than the config's (eval.py --image_size,
        FixRes) is checked against the model first, as setup checks the config's."""
        d = self.config.data
        size = image_size or (self.image_size if train else self.eval_image_size)
        if size not in self.checked_sizes:
            if size < self.spec.min_resolution:
                raise ConfigError(
                    f"{self.spec.name} needs inputs of at least {self.spec.min_resolution} px; "
                    f"got {size}."
                )
            geometry = _registry_geometry(self.spec, self.model)
            check_input_size(self.spec, self.model, self.channels, size, registry_geometry=geometry)
            self.checked_sizes.add(size)
        return PPContext(
            image_size=size,
            crop_pct=self.crop_pct,
            mean=tuple(d.mean),
            std=tuple(d.std),
            channels=self.channels,
        )

    @property
    def input_shape(self):
        return (1, self.image_size, self.image_size, self.channels)


def auto_dtype(device=None) -> str:
    """The compute dtype `model.dtype = 'auto'` means on `device` (default: JAX's first)."""
    device = device or jax.devices()[0]
    capability = getattr(device, "compute_capability", None)
    return chips.auto_dtype(device.platform, device.device_kind, capability)


def resolve_dtype(config, saved: dict | None = None):
    """`config` with `model.dtype = 'auto'` replaced by the dtype it means for this run.

    A run keeps the dtype it started with: 'auto' continues a workdir's saved config in its
    recorded dtype (float32 for every workdir written before 'auto' existed), and means
    `auto_dtype()` for a new run. The workdir's config.json then records the concrete dtype,
    so eval.py, exports and resumes on another platform compute as the run did.

    Args:
      config: the run's config (not changed: a changed copy is returned).
      saved: the workdir's config.json, or None for a new run.

    Returns:
      (config, the dtype requested: 'auto' or the concrete name given).
    """
    requested = config.model.get("dtype", "float32")
    if requested != "auto":
        return config, requested
    recorded = ((saved or {}).get("model") or {}).get("dtype")
    chosen = recorded if recorded in _DTYPES else auto_dtype()
    config = copy.deepcopy(config)
    config.model.dtype = chosen
    return config, requested


def compute_dtype(name: str, where: str):
    """The jnp dtype a `model.dtype` name means here ('auto': `auto_dtype()`).

    Raises:
      ConfigError: an unknown name (the message starts with `where`, e.g. the flag).
    """
    if name == "auto":
        name = auto_dtype()
    if name not in _DTYPES:
        raise ConfigError(f"{where}={name!r}: use one of {sorted(_DTYPES)}.")
    return _DTYPES[name]


def model_kwargs(config, num_classes: int) -> dict:
    """Constructor arguments from the `model` config section (unset placeholders skipped);
    `dtype = 'auto'` is `auto_dtype()` (the trainer resolves it first: `resolve_dtype`)."""
    kwargs = {k: v for k, v in config.model.items() if k not in _NOT_MODEL_ARGS and v is not None}
    if "dtype" in kwargs:
        kwargs["dtype"] = compute_dtype(kwargs["dtype"], "--config.model.dtype")
    policy = kwargs.pop("remat_policy", None)
    if policy is not None:
        if policy not in REMAT_POLICIES:
            raise ConfigError(
                f"--config.model.remat_policy={policy!r}: use one of {', '.join(REMAT_POLICIES)}."
            )
        if not kwargs.get("remat"):
            raise ConfigError(
                f"--config.model.remat_policy={policy!r} needs --config.model.remat=True."
            )
        kwargs["remat"] = policy
    kwargs.setdefault("num_classes", num_classes)
    return kwargs


def build_model(config, num_classes: int):
    """(spec, model) of the `model` config section; the registry refuses what the family lacks."""
    spec = models.get_spec(config.model.name)
    return spec, models.create(spec.name, **model_kwargs(config, num_classes))


def setup(config: ml_collections.ConfigDict) -> Experiment:
    """Validates the config and builds the experiment's static parts."""
    validate(config)  # every value in range, before anything is built
    entries.check(config)  # the evaluators' entries too
    spec = models.get_spec(config.model.name)  # unknown model: clear error first
    d = config.data
    image_size = d.image_size or spec.resolution
    eval_image_size = d.eval_image_size or d.image_size or spec.eval_resolution
    if min(image_size, eval_image_size) < spec.min_resolution:
        raise ConfigError(
            f"{spec.name} needs inputs of at least {spec.min_resolution} px; got "
            f"image_size={image_size}, eval_image_size={eval_image_size}."
        )
    mesh = mesh_from_config(config.mesh)
    parse_rules(config.mesh.get("rules"))  # bad regexes and axis names fail here
    check_batch(config.train.batch_size, mesh, "train.batch_size")
    check_batch(config.eval.batch_size, mesh, "eval.batch_size")
    # Synthetic data takes the class count it is asked for (data's, else the head's).
    source = get_source(d, image_size=image_size, num_classes=config.model.get("num_classes"))
    spec, model = build_model(config, decide_num_classes(config, source))
    # Arrays know their channels (digits: 1); decoded files follow the model (RGB: 3).
    channels = d.channels or getattr(source, "channels", None) or spec.in_chans
    stored = getattr(source, "channels", None)
    problems = []  # all of them in one error, not one per attempt
    if d.channels and stored and d.channels != stored:
        problems.append(
            f"--config.data.channels={d.channels}, but the images of {source.name} have "
            f"{stored} channel(s); leave it unset (the model then takes {stored})"
        )
    for key in ("mean", "std"):
        if len(d[key]) not in (1, channels):
            problems.append(
                f"--config.data.{key}={tuple(d[key])} has {len(d[key])} values for {channels}-"
                f"channel inputs; give one value" + (f" or {channels}" if channels > 1 else "")
            )
    if problems:
        raise ConfigError("; ".join(problems) + ".")
    check_input_size(
        spec,
        model,
        channels,
        image_size,
        eval_image_size,
        registry_geometry=_registry_geometry(spec, model),
    )
    return Experiment(
        config=config,
        spec=spec,
        source=source,
        model=model,
        mesh=mesh,
        image_size=image_size,
        eval_image_size=eval_image_size,
        crop_pct=d.crop_pct or spec.crop_pct,
        channels=channels,
        checked_sizes={image_size, eval_image_size},
    )


def decide_num_classes(config, source: Source) -> int:
    """The run's one class count: the data's. The head and every label must agree with it.

    A head smaller than the label set turns labels >= its size into all-zero targets (loss 0,
    never learnt, never counted right); a larger one has outputs no label ever trains. So a
    `model.num_classes` or `data.num_classes` that differs from the data's count is an error,
    not a setting. (Synthetic data is generated with the count asked for.)

    Raises:
      ConfigError: naming both numbers and what to change.
    """
    have = source.num_classes
    head = config.model.get("num_classes")
    asked = config.data.get("num_classes")
    if asked is not None and asked != have:
        raise ConfigError(
            f"--config.data.num_classes={asked}, but {source.name} has {have} classes: "
            "data.num_classes only sets the class count of synthetic data. Leave it unset "
            f"(the model then gets {have} outputs), or use data with {asked} classes."
        )
    if head is not None and head != have:
        what = (
            f"its labels {head}-{have - 1} would be all-zero targets (loss 0) that no output "
            "predicts"
            if head < have
            else f"{head - have} output(s) would never see a label"
        )
        raise ConfigError(
            f"--config.model.num_classes={head}, but {source.name} has {have} classes "
            f"(labels 0-{have - 1}): {what}. Leave model.num_classes unset (the head then "
            f"gets {have} outputs), or choose data with {head} classes (to fine-tune weights "
            "with another head, keep it unset and set --config.init.reset_head=True)."
        )
    return have


def _registry_geometry(spec: ModelSpec, model) -> bool:
    """Whether the model is built as registered, up to options that move no pixel."""
    return as_registered(spec, model, ignore=_GEOMETRY_NEUTRAL)


def check_input_size(
    spec: ModelSpec, model, channels: int, *sizes: int, registry_geometry: bool = False
) -> None:
    """Fails before any compilation when the model cannot take an input size, or would
    silently ignore part of it.

    `spec.min_resolution` (checked first) is the documented minimum. This traces the model
    abstractly at each size (shapes only, as `jax.eval_shape`: no compilation, no FLOPs) and
    walks the trace back from the logits (`cnnx.models.coverage`): a size the layers refuse
    (patch or window divisibility, width/depth overrides), or one with a whole row or column
    of pixels that no logit depends on, is an error. The second is a silent crop: `vit_ti_16`
    at 40 px reads 32 of the 40 rows (patches of 16), a stride-2 VALID layer can drop the last
    row; torchvision and timm refuse such inputs for patch models. A trailing band no wider
    than the one the architecture drops at its registered resolution is accepted (logged):
    that is the reference model's own behaviour (NIN and NASNet-A Mobile at 224 px leave the
    last row unused). Every registered resolution passes (tests/train/test_input_checks.py).

    Args:
      spec, model, channels: the model as built for the run.
      *sizes: input sizes (px, square) to check.
      registry_geometry: the model has the registry's layer geometry (no patch, window,
        width or depth override): its own resolutions are then known to be fine and are not
        traced again (a trace of a DenseNet takes seconds).

    Raises:
      ConfigError: naming the size, what fails or which rows/columns are never used, and
        nearby sizes that use every pixel.
    """
    known = {spec.resolution, spec.eval_resolution}
    for size in sorted(set(sizes)):
        if registry_geometry and size in known:
            continue
        rows, cols = _unused_rows_and_columns(spec, model, channels, size)
        if (rows.any() or cols.any()) and not _as_reference(spec, model, channels, rows, cols):
            words = [_positions(rows, "row"), _positions(cols, "column")]
            words = " and ".join(w for w in words if w)
            trailing = max(_trailing(rows), _trailing(cols))
            suggest = _usable_sizes(spec, model, channels, size, trailing) if trailing else ""
            raise ConfigError(
                f"{spec.name} at {size}x{size} px never uses {words}: no output depends on "
                "those pixels, so the model would silently crop them. Use a size whose every "
                f"pixel reaches the model{suggest} with --config.data.image_size / "
                "eval_image_size (eval.py: --image_size)."
            )


def nearest_input_size(
    spec: ModelSpec, model, channels: int, size: int, *, radius: int | None = None
) -> int:
    """The input size nearest to `size` that `check_input_size` passes (`size` itself if it
    does; at equal distance the larger one). For sizes a scaling rule derives (γ·R, γ^φ·R,
    FixRes test sizes): LeNet-5 takes 32 or 36 px, not the 35 that γ=1.1 gives.

    Args:
      spec, model, channels: the model as built for the run.
      size: the size the rule asks for (px, square).
      radius: how far to look either side (default: a quarter of `size`, at least 8 px).

    Raises:
      ConfigError: no size within `radius` is accepted (naming why `size` is refused).
    """
    radius = radius if radius is not None else max(8, size // 4)
    first_error = None
    for offset in range(radius + 1):
        for candidate in (size + offset, size - offset) if offset else (size,):
            if candidate < spec.min_resolution:
                continue
            try:
                check_input_size(spec, model, channels, candidate)
            except ConfigError as e:
                first_error = first_error or e
                continue
            return candidate
    raise ConfigError(
        f"{spec.name} accepts no input size within {radius} px of {size} px"
        + (f" ({first_error})" if first_error else f" (its minimum is {spec.min_resolution})")
    )


def _as_reference(spec: ModelSpec, model, channels: int, rows, cols) -> bool:
    """Whether unused rows/columns are only the trailing band that the architecture drops at
    its own resolution too (timm's nasnetamobile and NIN leave the last row of a 224 px image
    unused: a stride-2/4 VALID stem). That much is the reference's behaviour, not a crop."""
    n = max(_trailing(rows), _trailing(cols))
    if rows.sum() + cols.sum() != _trailing(rows) + _trailing(cols):
        return False  # unused pixels inside the image: never the reference's
    if len(rows) != spec.resolution:
        try:
            ref_rows, ref_cols = _unused_rows_and_columns(spec, model, channels, spec.resolution)
        except ConfigError:  # overrides that do not fit the registered resolution
            return False
        if n > max(_trailing(ref_rows), _trailing(ref_cols)):
            return False
    logging.info(
        "%s at %d px: the last %d row(s) and column(s) reach no output, as at its reference "
        "resolution (%d px).",
        spec.name,
        len(rows),
        n,
        spec.resolution,
    )
    return True


def _trailing(unused: np.ndarray) -> int:
    """How many of the last positions are unused (the usual crop: a band at the end)."""
    used = np.flatnonzero(~unused)
    return len(unused) - (used[-1] + 1) if len(used) else len(unused)


def _unused_rows_and_columns(spec: ModelSpec, model, channels: int, size: int):
    """(rows, columns) of a size x size input that no logit depends on, as bool vectors."""
    rng = jax.random.PRNGKey(0)

    def logits(x):  # eval mode: the inference graph, without training-only heads
        return model.init_with_output(rng, x, train=False)[0]

    x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    try:
        unused = unused_input_positions(logits, x)
    except Exception as e:  # any layer's complaint means: this input does not fit
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ConfigError(
            f"{spec.name} cannot take {size}x{size} inputs with {channels} channel(s) "
            f"({type(e).__name__}: {first}). Its documented minimum is "
            f"{spec.min_resolution} px and it was built for {spec.resolution} px; change "
            "--config.data.image_size / eval_image_size (or the model's width/depth)."
        ) from None
    return unused[1], unused[2]


def _positions(unused: np.ndarray, what: str) -> str:
    idx = np.flatnonzero(unused)
    if not len(idx):
        return ""
    n = len(unused)
    if len(idx) == 1 and idx[0] == n - 1:
        return f"the last {what} ({what} {n - 1})"
    if idx[0] == n - len(idx):  # a band at the end: the usual crop
        return f"the last {len(idx)} {what}s ({what}s {idx[0]}-{n - 1})"
    shown = ", ".join(map(str, idx[:8])) + (" ..." if len(idx) > 8 else "")
    return f"{len(idx)} {what}s ({shown})"


def _usable_sizes(spec: ModelSpec, model, channels: int, size: int, unused: int) -> str:
    """', e.g. 32 or 48,': sizes near `size` that use every pixel. Below: the part the model
    reads (size - unused); above: that plus the next power of two over `unused` (the usual
    total stride of the cropping layers), a few tries, each one more trace."""

    def usable(s):
        try:
            if s < spec.min_resolution:
                return False
            rows, cols = _unused_rows_and_columns(spec, model, channels, s)
            return not (rows.any() or cols.any())
        except ConfigError:
            return False

    below = size - unused
    found = [below] if usable(below) else []
    step = 1 << int(unused).bit_length()
    for _ in range(3):
        if below + step > size and usable(below + step):
            found.append(below + step)
            break
        step *= 2
    return f", e.g. {' or '.join(map(str, found))}," if found else ""


def check_step_counts(config, steps_per_epoch: int, total_steps: int) -> None:
    """Lengths given in epochs, turned into steps, must fit the int32 step counter."""
    limit = 2**31 - 1
    s = config.schedule
    counts = {
        "train.num_epochs / num_steps": total_steps,
        "schedule.warmup_epochs": round(s.get("warmup_epochs", 0) * steps_per_epoch),
        "schedule.decay_every_epochs": round(s.get("decay_every_epochs", 1) * steps_per_epoch),
        "schedule.decay_epochs": max(
            (round(e * steps_per_epoch) for e in s.get("decay_epochs", ())), default=0
        ),
    }
    for key, n in counts.items():
        if n > limit:
            raise ConfigError(
                f"--config.{key} comes to {n:,} steps ({steps_per_epoch} per epoch); steps are "
                f"counted in int32, at most {limit:,}. Lower it."
            )


def process_info() -> tuple[int, int]:
    return jax.process_index(), jax.process_count()
