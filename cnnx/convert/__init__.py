"""Weight conversion between torchvision / timm state_dicts and cnnx variables.

`from_torch(name, state_dict)` works for every registered model whose family has a rules
module here (`cnnx/convert/<family>.py`, imported automatically); a new family adds its
naming rules there and nothing else (the shared machinery is `core`). `input_normalization(name)`
says which mean/std the converted weights must be fed with: the reference's own, including any
re-normalisation the reference does inside `forward` (torchvision's `transform_input`).

  core       the generic rules (layouts, strictness) and the family registry
  to_torch   the inverse, cnnx variables -> state_dict, derived from the same rules
  reference  the torchvision / timm module a model reproduces (`reference_model`)
"""

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging
from flax import traverse_util

from cnnx.convert.core import (
    ConversionError,
    ConversionReport,
    TorchMapping,
    convert_state_dict,
    get_mapping,
    register_mapping,
)
from cnnx.convert.reference import reference_model
from cnnx.convert.to_torch import to_torch

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("core", "reference", "to_torch"):
        importlib.import_module(f"{__name__}.{_info.name}")


def from_torch(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    resolution: int | None = None,
    return_report: bool = False,
    **model_overrides,
):
    """Converts a torchvision / timm state_dict into cnnx variables for model `name`.

    Optional modules the state_dict lacks as a whole (auxiliary heads, which torchvision's
    pretrained GoogLeNet drops) get fresh initial values (PRNGKey(0)), as torchvision gives
    them when asked for aux heads with pretrained weights; they run only in training, so
    inference is the reference's. A warning and the report name them.

    Args:
      name: cnnx registry name.
      state_dict: torch tensors or numpy arrays keyed as in the reference implementation.
      resolution: input size used to trace the model's shapes (default: its test resolution).
      return_report: also return a `ConversionReport` (mapped, skipped, absent modules).
      **model_overrides: passed to `cnnx.models.create` (e.g. `num_classes=10`).

    Returns:
      `{'params': ..., 'batch_stats': ...}` (numpy arrays) ready for `model.apply`, and the
      report when `return_report`.

    Raises:
      ConversionError: the state_dict does not fit the model (names every misfit).
    """
    from cnnx import models

    spec = models.get_spec(name)
    model = models.create(name, **model_overrides)
    r = resolution or max(spec.test_resolution, spec.min_resolution)
    x = jnp.zeros((1, r, r, spec.in_chans))
    abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    variables, report = convert_state_dict(state_dict, get_mapping(spec.family), abstract)
    if report.absent:
        logging.warning(
            "%s: the state_dict has no %s (training-only heads); they start from fresh "
            "initial values and do not affect inference.",
            name,
            ", ".join(report.absent),
        )
        have = traverse_util.flatten_dict(variables)
        lacking = [p for p in traverse_util.flatten_dict(dict(abstract)) if p not in have]

        def fresh_values():
            # Only the lacking leaves are outputs, so XLA drops the rest of init.
            init = traverse_util.flatten_dict(model.init(jax.random.PRNGKey(0), x, train=False))
            return [init[p] for p in lacking]

        have.update(zip(lacking, jax.device_get(jax.jit(fresh_values)())))
        variables = traverse_util.unflatten_dict(have)
    return (variables, report) if return_report else variables


def input_normalization(
    name: str, transform_input: bool | None = None
) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """The mean / std (of pixels / 255) that converted reference weights must be fed with.

    Args:
      name: cnnx registry name.
      transform_input: for references with torchvision's `transform_input` flag (GoogLeNet,
        Inception v3), whether the weights were made with it on. None: as the reference's
        pretrained builder makes them (on), which the spec's mean / std describe.

    Returns:
      (mean, std, a sentence saying where they come from).

    Raises:
      ConversionError: `transform_input` given for a model whose reference has no such flag.
    """
    from cnnx import models
    from cnnx.models.registry import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        INCEPTION_MEAN,
        INCEPTION_STD,
    )

    spec = models.get_spec(name)
    if transform_input is None:
        source = spec.reference or "cnnx's default"
        return spec.mean, spec.std, f"the normalisation the {source} weights expect"
    if not get_mapping(spec.family).transform_input:
        raise ConversionError(
            f"{name}: its reference ({spec.reference or 'none'}) has no transform_input flag; "
            "leave the option out."
        )
    if transform_input:
        return (
            INCEPTION_MEAN,
            INCEPTION_STD,
            "transform_input=True: the reference maps ImageNet-normalised input to "
            "(x - 0.5) / 0.5 inside forward()",
        )
    return IMAGENET_MEAN, IMAGENET_STD, "transform_input=False: ImageNet mean / std as given"


__all__ = [
    "ConversionError",
    "ConversionReport",
    "TorchMapping",
    "convert_state_dict",
    "from_torch",
    "get_mapping",
    "input_normalization",
    "reference_model",
    "register_mapping",
    "to_torch",
]
