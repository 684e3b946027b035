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

from cnnx.analysis import reference_steps
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


def _analyse(fn, args) -> CompiledMemory:
    return of_compiled(jax.jit(fn).lower(*args).compile())


def of_compiled(compiled) -> CompiledMemory:
    """XLA's memory analysis of a compiled function (`jax.jit(f).lower(...).compile()`)."""
    m = compiled.memory_analysis()
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

    The train step is the trainer's (`reference_steps.train_setup`: the schema's optimizer,
    its state included, on one device, the state donated as the trainer donates it: updated
    buffers may reuse the old ones', counted in `alias`).

    Args:
      model: a Flax module.
      input_shape: (batch, height, width, channels).
      num_classes: label range for the training loss.

    Returns:
      {'inference': CompiledMemory, 'train': CompiledMemory}.
    """
    variables = reference_steps.abstract_variables(model, input_shape)
    x = jax.ShapeDtypeStruct(tuple(input_shape), jax.numpy.float32)
    setup = reference_steps.train_setup(model, input_shape, num_classes)
    return {
        "inference": _analyse(reference_steps.inference_fn(model), (variables, x)),
        "train": of_compiled(setup.step.lower(*setup.abstract_args()).compile()),
    }


def compiled_memory_registered(name: str, resolution: int | None = None, batch: int = 1):
    """`compiled_memory` of a registered model at `resolution` (default: the spec's)."""
    from cnnx import models

    spec = models.get_spec(name)
    r = resolution or spec.resolution
    return compiled_memory(models.create(name), (batch, r, r, spec.in_chans), spec.num_classes)


def sharded_train_memory(
    model,
    input_shape: Sequence[int],
    num_classes: int,
    mesh,
    *,
    optim_cfg=None,
    rules=None,
    min_size: int | None = None,
    compiler_options: dict | None = None,
) -> tuple[CompiledMemory, int]:
    """Per-device memory of the trainer's own step, compiled for a mesh from abstract inputs.

    The trainer's step (`reference_steps.train_setup`, as `compiled_memory`) compiled for a
    mesh, with the optimizer's state, the state sharded as the trainer shards it
    (`cnnx.parallel.sharding`, replicated unless the mesh has fsdp/model axes > 1 or `rules`
    say otherwise), the batch split over ('data', 'fsdp') and the state donated.
    Nothing is allocated: the inputs are `ShapeDtypeStruct`s carrying their shardings.

    Args:
      model: a Flax module.
      input_shape: global (batch, height, width, channels).
      num_classes: label range for the loss.
      mesh: a mesh from `cnnx.parallel.mesh.make_mesh`.
      optim_cfg: an `optim` config section (default: the schema's SGD with momentum).
      rules: sharding rules (see `cnnx.parallel.sharding`).
      min_size: 'auto' rule threshold (default `sharding.DEFAULT_MIN_SIZE`).
      compiler_options: XLA options for the compilation (see
        `cnnx.backends.remat_compiler_options`: remat needs one on CPU to save anything).

    Returns:
      (XLA's figures for one device, bytes of the train state one device holds).
    """
    from cnnx.parallel import sharding

    setup = reference_steps.train_setup(
        model, input_shape, num_classes, mesh, optim_cfg=optim_cfg, rules=rules, min_size=min_size
    )
    compiled = setup.step.lower(*setup.abstract_args()).compile(compiler_options)
    return of_compiled(compiled), sharding.bytes_per_device(
        setup.abstract_state, setup.state_shardings
    )
