"""Memory: parameter bytes, activation bytes per layer, and compiled peak of the steps.

Conventions: bytes of the actual dtypes (float32 unless the model is built with another
`dtype`); KB = 1024 bytes, MB = 1024² bytes. Activation bytes are the outputs of the table's
rows (conv, fc, matmul, pooling) summed over the forward pass: what a layer-by-layer
accounting counts, not what XLA keeps alive. The compiled figures are XLA's own
(`compile().memory_analysis()`): arguments + outputs + temporaries - aliased buffers.
"""

import dataclasses
import math
from collections.abc import Sequence

import jax
import numpy as np

from cnnx.analysis import steps
from cnnx.analysis.trace import Trace


def param_bytes(params) -> int:
    """Bytes of a parameter pytree (arrays or `ShapeDtypeStruct`s)."""
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(params))


def activation_bytes(tr: Trace) -> int:
    """Sum of the output bytes of every row of a trace (whole batch)."""
    return sum(layer.out_bytes for layer in tr.layers)


@dataclasses.dataclass(frozen=True)
class CompiledMemory:
    """XLA's memory analysis of one compiled step, in bytes."""

    argument: int
    output: int
    temp: int
    alias: int

    @property
    def peak(self) -> int:
        """Arguments + outputs + temporaries, less buffers shared by inputs and outputs."""
        return self.argument + self.output + self.temp - self.alias


def _analyse(fn, args, donate=()) -> CompiledMemory:
    m = jax.jit(fn, donate_argnums=donate).lower(*args).compile().memory_analysis()
    return CompiledMemory(
        int(m.argument_size_in_bytes),
        int(m.output_size_in_bytes),
        int(m.temp_size_in_bytes),
        int(getattr(m, "alias_size_in_bytes", 0)),
    )


def compiled_memory(
    model, input_shape: Sequence[int], num_classes: int = 1000
) -> dict[str, CompiledMemory]:
    """Compiles (without running) the inference and train steps and reads their memory.

    Args:
      model: a Flax module.
      input_shape: (batch, height, width, channels).
      num_classes: label range for the training loss.

    Returns:
      {'inference': CompiledMemory, 'train': CompiledMemory}.
    """
    infer_args, train_args = steps.abstract_args(model, input_shape, num_classes)
    return {
        "inference": _analyse(steps.inference_fn(model), infer_args),
        # The variables are donated, as the trainer donates its state: updated parameters
        # may reuse the old ones' buffers (counted in `alias`).
        "train": _analyse(steps.train_step_fn(model), train_args, donate=(0,)),
    }


def compiled_memory_registered(name: str, resolution: int | None = None, batch: int = 1):
    """`compiled_memory` of a registered model at `resolution` (default: the spec's)."""
    from cnnx import models

    spec = models.get_spec(name)
    r = resolution or spec.resolution
    return compiled_memory(models.create(name), (batch, r, r, spec.in_chans), spec.num_classes)
