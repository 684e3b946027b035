"""A run's weights out of cnnx: torch `.pth` or safetensors, in the reference's own names.

A model with a torchvision / timm reference is written as that reference's state_dict
(`cnnx.convert.to_torch`), checked by loading it strictly into a freshly built reference
module before anything is written, so `torchvision.models.resnet50(num_classes=N)
.load_state_dict(torch.load(path))` and timm's `load_checkpoint` accept the file. A model
without one (lenet5, nin, the CIFAR ResNets, ...) is written to safetensors under its cnnx
names (`params/stem/conv/kernel`, Flax layout), which `flax.traverse_util.unflatten_dict(
..., sep='/')` turns back into variables.

Beside the weights goes `<output>.json` (`run.sidecar_path`): the model,
which names were written, the input preprocessing (mean / std, resolution, crop ratio) and
the run's own config.json, since none of it is in a state_dict.
"""

import io

import numpy as np
from flax import traverse_util

from cnnx import convert
from cnnx.convert.reference import reference_library
from cnnx.errors import ConfigError
from cnnx.export.run import TrainedRun, write_export

FORMATS = ("torch", "safetensors")


def reference_state_dict(run: TrainedRun) -> tuple[dict[str, np.ndarray], str]:
    """The run's variables as its reference's state_dict, checked by a strict load.

    Returns:
      (key -> numpy array, the reference, e.g. 'torchvision:resnet50').

    Raises:
      ConversionError: no reference, an option it lacks, the variables do not fit it, or
        torch / its library is not installed.
    """
    module = convert.reference_model(run.name, **run.options)
    import torch  # installed: the reference module was built

    state_dict = convert.to_torch(run.name, run.variables, module.state_dict())
    try:  # the check torchvision / timm users will make
        module.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    except RuntimeError as e:
        raise convert.ConversionError(f"The reference refuses the export: {e}") from None
    return state_dict, ":".join(reference_library(run.name))


def own_names(run: TrainedRun) -> dict[str, np.ndarray]:
    """The variables under their cnnx paths (`params/stem/conv/kernel`), Flax layout."""
    flat = traverse_util.flatten_dict(run.variables, sep="/")
    return {k: np.ascontiguousarray(v) for k, v in flat.items()}


def export_weights(run: TrainedRun, output: str, to: str, *, cnnx_names: bool = False) -> dict:
    """Writes the run's weights and their description (`sidecar_path(output)`).

    Args:
      run: the checkpoint (`cnnx.export.run.load_run`).
      output: the weights file (local or gs://).
      to: 'torch' (`torch.save` of the reference's state_dict) or 'safetensors'.
      cnnx_names: safetensors only: write cnnx's own names even where a reference exists.

    Returns:
      The description written beside the weights.

    Raises:
      ConfigError: `to` unknown, or 'torch' asked of a model without reference.
      ConversionError: see `reference_state_dict`.
    """
    if to not in FORMATS:
        raise ConfigError(f"--to={to!r}: use one of {', '.join(FORMATS)}.")
    has_reference = reference_library(run.name) is not None
    if to == "torch" and (cnnx_names or not has_reference):
        raise ConfigError(
            f"{run.name} has no torchvision / timm reference, so there is no torch model to "
            "load it into: use --to=safetensors (cnnx's own names)."
            if not has_reference
            else "cnnx's own names are written to safetensors only: use --to=safetensors."
        )
    if has_reference and not cnnx_names:
        tensors, names = reference_state_dict(run)
    else:
        tensors, names = own_names(run), "cnnx"
    description = {
        "model": run.name,
        "names": names,
        "num_classes": run.options["num_classes"],
        "step": run.step,
        "ema": run.ema,
        "preprocessing": run.preprocessing(),
        "config": run.config,
    }
    if to == "torch":
        import torch

        buffer = io.BytesIO()
        torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, buffer)
        data = buffer.getvalue()
    else:
        from safetensors.numpy import save

        metadata = {"format": "pt" if names != "cnnx" else "flax", "cnnx_model": run.name}
        data = save(tensors, metadata=metadata)
    write_export(output, data, description)
    return description
