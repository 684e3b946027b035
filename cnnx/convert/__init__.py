"""Weight conversion from torchvision / timm state_dicts to cnnx variables.

`from_torch(name, state_dict)` works for every registered model whose family has a rules
module here (`cnnx/convert/<family>.py`, imported automatically); a new family adds its
naming rules there and nothing else.
"""

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from cnnx.convert.core import (
    ConversionError,
    TorchMapping,
    convert_state_dict,
    get_mapping,
    register_mapping,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("core",):
        importlib.import_module(f"{__name__}.{_info.name}")


def from_torch(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    resolution: int | None = None,
    return_skipped: bool = False,
    **model_overrides,
):
    """Converts a torchvision / timm state_dict into cnnx variables for model `name`.

    Args:
      name: cnnx registry name.
      state_dict: torch tensors or numpy arrays keyed as in the reference implementation.
      resolution: input size used to trace the model's shapes (default: its test resolution).
      return_skipped: also return the torch keys that were deliberately ignored.
      **model_overrides: passed to `cnnx.models.create` (e.g. `num_classes=10`).

    Returns:
      `{'params': ..., 'batch_stats': ...}` (numpy arrays) ready for `model.apply`, and the
      skipped keys when `return_skipped`.
    """
    from cnnx import models

    spec = models.get_spec(name)
    model = models.create(name, **model_overrides)
    r = resolution or max(spec.test_resolution, spec.min_resolution)
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, r, r, spec.in_chans)), train=False)
    )
    variables, skipped = convert_state_dict(state_dict, get_mapping(spec.family), abstract)
    return (variables, skipped) if return_skipped else variables


__all__ = [
    "ConversionError",
    "TorchMapping",
    "convert_state_dict",
    "from_torch",
    "get_mapping",
    "register_mapping",
]
