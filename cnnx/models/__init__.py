"""The model zoo.

Importing this package imports every family module in it, and each registers its variants
(`registry.register_family`). Use `create`, `list_models` and `get_spec`. Family modules
never import each other (tests/models/test_family_imports.py): what two families share lives in
`cnnx.layers`, `scaling` or a private `_*` module here (`_inception_blocks`, `_alexnet_style`).
"""

import importlib
import pkgutil

from cnnx.models.registry import ModelSpec, create, get_spec, list_models, register

_NOT_FAMILIES = {"registry", "scaling"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _NOT_FAMILIES and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ModelSpec", "create", "get_spec", "list_models", "register"]
