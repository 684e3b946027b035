"""The model zoo.

Importing this package imports every family module in it, and each registers its variants
(`registry.register_family`). Use `create`, `list_models` and `get_spec`. Family modules
never import each other (tests/models/test_family_imports.py): what two families share lives in
`cnnx.layers`, `scaling` or a private `_*` module here (`_inception_blocks`, `_alexnet_style`).

  contract  `Classifier`, the base of every family: the shared options and `__call__`
  registry  the registry and its frozen `ModelSpec`s
  scaling   compound scaling: `round_filters`, `round_repeats`, `compound`
  coverage  which input pixels reach the output (the input-size check of every run)
  layer_groups  where each parameter sits in depth (stem, blocks, head): layer-wise lr decay
  <family>  one module per family, e.g. `resnet`, `vit`, `efficientnet`
"""

import importlib
import pkgutil

from cnnx.models.registry import ModelSpec, create, get_spec, list_models, register

# Modules of this package that are not families (and private `_*` modules).
SHARED_MODULES = frozenset({"registry", "scaling", "coverage", "contract", "layer_groups"})

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in SHARED_MODULES and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ModelSpec", "create", "get_spec", "list_models", "register"]
