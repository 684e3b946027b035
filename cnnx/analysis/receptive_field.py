"""Receptive fields: size, jump and start of every conv/pool layer's output.

Recurrence (Araujo et al., "Computing Receptive Fields of CNNs", Distill 2019), per layer of
kernel k (dilated: (k - 1) d + 1), stride s and leading padding p:
  size  <- size + (k - 1) jump
  start <- start + ((k - 1) / 2 - p) jump
  jump  <- jump × s
from (1, 1, 0) at the input (pixel i has centre i). Where branches meet, the walk keeps the
largest field (the main path); flattening, attention or global pooling make it 'global'.
Only the first spatial axis is followed (square kernels and strides in every model here).
"""

from collections.abc import Sequence

from cnnx.analysis.trace import GLOBAL, INPUT_RF, RF, Trace, trace_registered

__all__ = ["GLOBAL", "RF", "layer_fields", "receptive_fields", "stack"]


def stack(windows: Sequence[tuple[int, int, int]], rf: RF = INPUT_RF) -> RF:
    """The field after a chain of (kernel, stride, padding) windows."""
    for k, s, p in windows:
        rf = rf.window(k, s, p)
    return rf


def layer_fields(tr: Trace) -> list[tuple[str, str, object]]:
    """(layer name, kind, RF or 'global') for every conv/pool row of a trace."""
    return [(layer.name, layer.kind, layer.rf) for layer in tr.layers if layer.rf is not None]


def receptive_fields(name: str, resolution: int | None = None):
    """`layer_fields` of a registered model (names are module paths)."""
    from cnnx.analysis.trace import attach_params

    tr = trace_registered(name, resolution)
    attach_params(tr.layers, tr.params)
    return layer_fields(tr)
