"""Generic torch state_dict -> Flax variables conversion.

A family describes only how its module paths are named (`TorchMapping`: regex renames from
torch module paths to cnnx module paths, plus tensors to skip or convert by hand); the layout
changes are the same for every family and live here:

  conv weight   (O, I/groups, kh, kw) -> kernel (kh, kw, I/groups, O)
  linear weight (O, I)                -> kernel (I, O)
  norm weight / bias                  -> scale / bias            (params)
  running_mean / running_var          -> mean / var              (batch_stats)
  num_batches_tracked                 -> dropped (BatchNorm bookkeeping, no weight)

Conversion is strict: every cnnx variable must be filled exactly once with a tensor of the
right shape, and every torch tensor must be used or explicitly skipped; otherwise a
`ConversionError` lists what did not fit. The one exception is a module the family declares
optional (`TorchMapping.optional`, e.g. auxiliary heads that run only in training): a
state_dict may lack it as a whole, and the report says so.
"""

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from flax import traverse_util

from cnnx.errors import CnnxError


class ConversionError(CnnxError, ValueError):
    """A state_dict does not fit the model it is converted into."""


@dataclasses.dataclass(frozen=True)
class TorchMapping:
    """How one family's torch names map onto cnnx names.

    Attributes:
      renames: (pattern, replacement) regex pairs applied in order to the torch module path
        (the key without its last component, dots kept); the result uses '/' between cnnx
        module names.
      skip: regexes of full torch keys to ignore (e.g. auxiliary heads a variant lacks).
      custom: optional function (key, array) -> list of (cnnx path tuple, array) or None; when
        it returns a list, that tensor is placed as given and the generic rules are skipped.
      optional: regexes of cnnx module paths (`aux1`, `AuxLogits`) that a state_dict may lack
        entirely: training-only heads that reference checkpoints drop (torchvision's
        pretrained GoogLeNet has no `aux1.*` / `aux2.*`). Each regex is one all-or-nothing
        group; a partly present group is still a mismatch.
      transform_input: the reference class has torchvision's `transform_input` flag, an affine
        map at the start of `forward` that turns ImageNet-normalised input into
        (x - 0.5) / 0.5; torchvision's pretrained builders set it.
    """

    renames: Sequence[tuple[str, str]] = ()
    skip: Sequence[str] = ()
    custom: Callable[[str, np.ndarray], list[tuple[tuple[str, ...], np.ndarray]] | None] | None = (
        None
    )
    optional: Sequence[str] = ()
    transform_input: bool = False

    def module_path(self, torch_module: str) -> str:
        path = torch_module
        for pattern, repl in self.renames:
            path = re.sub(pattern, repl, path)
        return path.replace(".", "/")

    def skips(self, key: str) -> bool:
        """Whether the torch tensor `key` is deliberately left out (`skip`)."""
        return any(re.search(p, key) for p in self.skip)


_MAPPINGS: dict[str, TorchMapping] = {}


def register_mapping(family: str, mapping: TorchMapping) -> TorchMapping:
    """Registers the torch naming rules of a model family (one call per family module)."""
    _MAPPINGS[family] = mapping
    return mapping


def get_mapping(family: str) -> TorchMapping:
    """The torch naming rules registered for a model family (`cnnx/convert/<family>.py`).

    Raises:
      ConversionError: no rules are registered for `family` (the message lists those that are).
    """
    import cnnx.convert  # noqa: F401  (imports every family's rules)

    if family not in _MAPPINGS:
        raise ConversionError(
            f"No torch conversion rules for model family {family!r}; families with rules: "
            f"{', '.join(sorted(_MAPPINGS))}."
        )
    return _MAPPINGS[family]


def to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor (any device/dtype), numpy array or array-like as a float32/int numpy array."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        tensor = tensor.numpy()
    return np.asarray(tensor)


def _place(key: str, array: np.ndarray, module: tuple[str, ...], targets: Mapping):
    """Generic placement of one torch tensor under a cnnx module path."""
    leaf = key.rsplit(".", 1)[-1]
    has = lambda col, name: (col, *module, name) in targets  # noqa: E731
    if leaf == "weight":
        if has("params", "kernel"):
            if array.ndim == 4:
                array = array.transpose(2, 3, 1, 0)
            elif array.ndim == 2:
                array = array.T
            return [(("params", *module, "kernel"), array)]
        if has("params", "scale"):
            return [(("params", *module, "scale"), array)]
    elif leaf == "bias" and has("params", "bias"):
        return [(("params", *module, "bias"), array)]
    elif leaf == "running_mean":
        return [(("batch_stats", *module, "mean"), array)]
    elif leaf == "running_var":
        return [(("batch_stats", *module, "var"), array)]
    return [(("params", *module, leaf), array)]


def is_counter(key: str) -> bool:
    """Whether a torch key is BatchNorm's `num_batches_tracked` (bookkeeping, not a weight)."""
    return key.endswith("num_batches_tracked")


def placements(
    key: str, array: np.ndarray, mapping: TorchMapping, targets: Mapping
) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """Where one torch tensor goes among the cnnx variables, and in what layout.

    The family's `custom` rule when it claims the key, else the generic rules above. The
    rules only rename, transpose and reshape, so `cnnx.convert.to_torch` inverts them by
    running them on element indices.

    Args:
      key: the torch state_dict key.
      array: its values (any dtype; integer indices included).
      mapping: the family's naming rules.
      targets: the flattened cnnx variables (path tuple -> array or shape struct), which
        tell a convolution's `kernel` from a norm's `scale`.

    Returns:
      (cnnx variable path, array in cnnx layout) pairs; paths are not checked here.
    """
    placed = mapping.custom(key, array) if mapping.custom else None
    if placed is None:
        module = tuple(p for p in mapping.module_path(key.rsplit(".", 1)[0]).split("/") if p)
        placed = _place(key, array, module, targets)
    return placed


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What a conversion used and what it did not.

    Attributes:
      mapped: torch keys placed into cnnx variables.
      skipped: torch keys deliberately left out (`TorchMapping.skip`).
      counters: number of BatchNorm `num_batches_tracked` entries dropped (bookkeeping, not
        weights; cnnx's BatchNorm uses a fixed momentum).
      absent: optional cnnx modules (`TorchMapping.optional`) the state_dict lacks, e.g.
        `aux1`; `from_torch` gives them fresh initial values.
    """

    mapped: tuple[str, ...]
    skipped: tuple[str, ...]
    counters: int
    absent: tuple[str, ...] = ()


def absent_groups(
    targets: Mapping[tuple[str, ...], Any], filled: Mapping, optional: Sequence[str]
) -> tuple[set[tuple[str, ...]], list[str]]:
    """Variables of optional groups with nothing filled, and each such group's module."""
    excused: set[tuple[str, ...]] = set()
    names: list[str] = []
    for pattern in optional:
        group = [p for p in targets if re.search(pattern, "/".join(p[1:]))]
        if group and not any(p in filled for p in group):
            excused.update(group)
            modules = [p[1:-1] for p in group]  # drop the collection and the leaf name
            common = modules[0]
            for m in modules[1:]:
                n = next((i for i, (a, b) in enumerate(zip(common, m)) if a != b), len(common))
                common = common[: min(n, len(m))]
            names.append("/".join(common) or pattern)
    return excused, names


def check_fit(summary: str, misfits: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Raises one `ConversionError` listing every misfit by kind (the first 20 of each).

    Args:
      summary: the first line (what does not fit what, and the likely cause).
      misfits: (kind, items) pairs; kinds with no items are left out.

    Raises:
      ConversionError: when any kind has items.
    """
    problems = []
    for title, items in misfits:
        if items:
            shown = "\n    ".join(items[:20]) + ("\n    ..." if len(items) > 20 else "")
            problems.append(f"  {title} ({len(items)}):\n    {shown}")
    if problems:
        raise ConversionError(summary + "\n" + "\n".join(problems))


def convert_state_dict(
    state_dict: Mapping[str, Any], mapping: TorchMapping, abstract_variables: Mapping
) -> tuple[dict, ConversionReport]:
    """Converts a state_dict to match `abstract_variables` (shapes from `jax.eval_shape`).

    Returns:
      (variables as nested dicts of numpy arrays, `ConversionReport`). Optional modules the
      state_dict lacks are left out of the variables and named in the report.

    Raises:
      ConversionError: listing unmatched tensors, shape mismatches and unfilled variables.
    """
    targets = traverse_util.flatten_dict(dict(abstract_variables))
    filled: dict[tuple[str, ...], np.ndarray] = {}
    mapped, skipped, unmatched, mismatched, duplicated = [], [], [], [], []
    counters = 0
    for key, tensor in state_dict.items():
        if is_counter(key):
            counters += 1
            continue
        if mapping.skips(key):
            skipped.append(key)
            continue
        mapped.append(key)
        for path, value in placements(key, to_numpy(tensor), mapping, targets):
            if path not in targets:
                unmatched.append(f"{key} -> {'/'.join(path)}")
            elif tuple(targets[path].shape) != tuple(value.shape):
                mismatched.append(
                    f"{key} {tuple(value.shape)} -> {'/'.join(path)} {tuple(targets[path].shape)}"
                )
            elif path in filled:
                duplicated.append(f"{key} -> {'/'.join(path)}")
            else:
                filled[path] = value.astype(targets[path].dtype)
    excused, absent = absent_groups(targets, filled, mapping.optional)
    missing = sorted("/".join(p) for p in targets if p not in filled and p not in excused)
    check_fit(
        "The state_dict does not fit the model (is it the same architecture and number of "
        "classes? pass num_classes=... to match its head):",
        (
            ("torch tensors with no cnnx variable", unmatched),
            ("shape mismatches", mismatched),
            ("cnnx variables filled twice", duplicated),
            ("cnnx variables left unfilled", missing),
        ),
    )
    report = ConversionReport(tuple(mapped), tuple(skipped), counters, tuple(absent))
    return traverse_util.unflatten_dict(filled), report
