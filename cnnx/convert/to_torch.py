"""cnnx variables -> a torchvision / timm state_dict: the inverse of `convert_state_dict`.

No family writes inverse rules. The forward rules (`core.placements`: a family's regex
renames and `custom` function, then the generic layout changes) only rename, transpose and
reshape, so each reference tensor's inverse is read off by converting its *element indices*:
the tensor `arange(n).reshape(shape)` goes through the forward rules, and the index array
that lands in a cnnx variable says, for every element of that variable, which element of
the torch tensor it came from. Exporting scatters the cnnx values back to those positions,
so a round trip torch -> cnnx -> torch is exact (bit for bit) by construction.

A forward rule that is not a pure rearrangement (it drops, repeats or computes values) is
detected, not guessed: its indices must cover 0..n-1 exactly once, and converting the
indices shifted by n must give the same arrays shifted by n. Such a tensor is refused with
a `ConversionError`.

What the forward conversion leaves out comes back from the reference itself:
`num_batches_tracked` (BatchNorm's counter, which cnnx does not keep) gets the value asked
for, and skipped tensors (`TorchMapping.skip`, e.g. Swin's `relative_position_index`
constants) are copied from the template, which must therefore hold real values for them.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging
from flax import traverse_util

from cnnx.convert.core import (
    TorchMapping,
    absent_groups,
    check_fit,
    get_mapping,
    is_counter,
    placements,
    to_numpy,
)


def _shape_and_dtype(tensor: Any) -> tuple[tuple[int, ...], np.dtype]:
    """A template tensor's shape and numpy dtype, without reading its values."""
    shape = tuple(int(d) for d in tensor.shape)
    dtype = str(tensor.dtype).removeprefix("torch.")
    return shape, np.dtype("float32" if dtype == "bfloat16" else dtype)


def _each_element_once(view: Any, base: np.ndarray) -> bool:
    """Whether `view` is `base` (C-contiguous) seen through a transpose / reshape: the same
    memory, every element exactly once."""
    if not isinstance(view, np.ndarray) or view.size != base.size or view.dtype != base.dtype:
        return False
    if view.__array_interface__["data"][0] != base.__array_interface__["data"][0]:
        return False
    step = view.itemsize
    for stride, size in sorted((s, d) for s, d in zip(view.strides, view.shape) if d != 1):
        if stride != step:
            return False
        step *= size
    return True


def _index_placements(key: str, shape, mapping: TorchMapping, targets: Mapping):
    """The forward placements of `key`'s element indices, or None if not a rearrangement."""
    n = int(np.prod(shape, dtype=np.int64))
    kind = np.int32 if 2 * n < 2**31 else np.int64
    index = np.arange(n, dtype=kind).reshape(shape)
    placed = placements(key, index, mapping, targets)
    shifted = placements(key, index + kind(n), mapping, targets)
    if len(placed) != len(shifted):
        return None
    for (path, a), (path2, b) in zip(placed, shifted, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if path != path2 or a.dtype.kind not in "iu" or not np.array_equal(a + n, b):
            return None
    flat = np.concatenate([np.asarray(a).ravel() for _, a in placed]) if placed else []
    if len(flat) != n or (n and (flat.min() < 0 or flat.max() >= n)):
        return None
    return placed if np.all(np.bincount(flat, minlength=n) == 1) else None


def _writers(key: str, shape, dtype, mapping: TorchMapping, targets: Mapping):
    """The torch tensor to fill and, per cnnx variable it came from, (path, shape, write).

    Fast path: the forward rules applied to the tensor itself give one view of it that holds
    every element once (a transpose or reshape), so writing the cnnx value through that view
    fills it. Otherwise, element indices (`_index_placements`) say where each value goes.
    None when the rules are not a rearrangement.
    """
    tensor = np.empty(shape, dtype)
    placed = placements(key, tensor, mapping, targets)
    if len(placed) == 1 and _each_element_once(placed[0][1], tensor):
        path, view = placed[0]
        return tensor, [(path, view.shape, lambda value: view.__setitem__(Ellipsis, value))]
    placed = _index_placements(key, shape, mapping, targets)
    if placed is None:
        return None
    flat = tensor.reshape(-1)

    def scatter(index):
        index = np.asarray(index).ravel()
        return lambda value: flat.__setitem__(index, value.ravel())

    return tensor, [(path, np.shape(index), scatter(index)) for path, index in placed]


def variables_to_torch(
    variables: Mapping,
    template: Mapping[str, Any],
    mapping: TorchMapping,
    *,
    num_batches_tracked: int = 0,
) -> dict[str, np.ndarray]:
    """The state_dict, in `template`'s keys, shapes and dtypes, holding `variables`.

    Args:
      variables: `{'params': ..., 'batch_stats': ...}` of a cnnx model (numpy or jax arrays).
      template: the reference model's own state_dict (torch tensors or numpy arrays). Only
        shapes and dtypes are read, except for tensors the family skips (constants), which
        are copied.
      mapping: the family's naming rules (`get_mapping(spec.family)`).
      num_batches_tracked: the value of every BatchNorm `num_batches_tracked` counter.

    Returns:
      key -> numpy array, in the template's key order, ready for `torch.from_numpy` or
      `safetensors.numpy.save_file`.

    Raises:
      ConversionError: the template does not fit the variables (naming every misfit), or a
        forward rule is not a rearrangement and so cannot be inverted.
    """
    flat = traverse_util.flatten_dict(dict(variables))
    out, used = {}, set()
    unmatched, mismatched, duplicated, not_invertible = [], [], [], []
    for key, tensor in template.items():
        shape, dtype = _shape_and_dtype(tensor)
        if is_counter(key):
            out[key] = np.full(shape, num_batches_tracked, dtype)
            continue
        if mapping.skips(key):
            out[key] = to_numpy(tensor).copy()
            continue
        found = _writers(key, shape, dtype, mapping, flat)
        if found is None:
            not_invertible.append(key)
            continue
        filled, writers = found
        for path, cnnx_shape, write in writers:
            name = "/".join(path)
            if path not in flat:
                unmatched.append(f"{key} -> {name}")
            elif tuple(flat[path].shape) != tuple(cnnx_shape):
                mismatched.append(f"{key} {shape} -> {name} {tuple(flat[path].shape)}")
            elif path in used:
                duplicated.append(f"{key} -> {name}")
            else:
                used.add(path)
                write(np.asarray(flat[path]))
        out[key] = filled
    excused, dropped = absent_groups(flat, used, mapping.optional)
    missing = sorted("/".join(p) for p in flat if p not in used and p not in excused)
    check_fit(
        "The variables do not fit the reference's state_dict (same architecture, options and "
        "number of classes?):",
        (
            ("reference tensors with no cnnx variable", unmatched),
            ("shape mismatches", mismatched),
            ("cnnx variables taken twice", duplicated),
            ("reference tensors whose forward rule is not a rearrangement", not_invertible),
            ("cnnx variables with no reference tensor", missing),
        ),
    )
    if dropped:
        logging.warning(
            "The reference has no %s: left out of the state_dict (training-only heads).",
            ", ".join(dropped),
        )
    return out


def to_torch(
    name: str, variables: Mapping, template: Mapping[str, Any], *, num_batches_tracked: int = 0
) -> dict[str, np.ndarray]:
    """cnnx variables of model `name` as the state_dict of its torchvision / timm reference.

    The inverse of `cnnx.convert.from_torch`: kernels transposed back, BatchNorm `mean` /
    `var` back to `running_mean` / `running_var`, custom tensors (class tokens, position
    embeddings, relative position tables, layer scales) back to their own shapes.

    Args:
      name: cnnx registry name (its family's rules are used).
      variables: `{'params': ..., 'batch_stats': ...}`.
      template: the reference's state_dict (`reference_model(name, ...).state_dict()`, or
        any module with the family's layout, e.g. timm's ConvNeXt for a torchvision-named
        variant); its keys, shapes and dtypes are what is written.
      num_batches_tracked: BatchNorm's counter (torch's own default is 0; it matters only
        to BatchNorm with `momentum=None`, a cumulative average).

    Returns:
      key -> numpy array (see `variables_to_torch`).

    Raises:
      ConversionError: see `variables_to_torch`.
    """
    from cnnx import models

    mapping = get_mapping(models.get_spec(name).family)
    return variables_to_torch(variables, template, mapping, num_batches_tracked=num_batches_tracked)
