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
    return of_compiled(jax.jit(fn, donate_argnums=donate).lower(*args).compile())


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

    Unlike `compiled_memory` (forward, backward and plain SGD on one device), this compiles
    `cnnx.train.steps.train_step` with the optimizer's state, the state sharded as the trainer
    shards it (`cnnx.train.sharding`, replicated unless the mesh has fsdp/model axes > 1 or
    `rules` say otherwise), the batch split over ('data', 'fsdp') and the state donated.
    Nothing is allocated: the inputs are `ShapeDtypeStruct`s carrying their shardings.

    Args:
      model: a Flax module.
      input_shape: global (batch, height, width, channels).
      num_classes: label range for the loss.
      mesh: a mesh from `cnnx.train.mesh.make_mesh`.
      optim_cfg: an `optim` config section (default: the schema's SGD with momentum).
      rules: sharding rules (see `cnnx.train.sharding`).
      min_size: 'auto' rule threshold (default `sharding.DEFAULT_MIN_SIZE`).
      compiler_options: XLA options for the compilation (see
        `cnnx.layers.remat.compiler_options`: remat needs one on CPU to save anything).

    Returns:
      (XLA's figures for one device, bytes of the train state one device holds).
    """
    import functools

    import jax.numpy as jnp
    import optax

    from cnnx.train import optim, sharding
    from cnnx.train import steps as train_steps
    from cnnx.train.config import base_config
    from cnnx.train.mesh import batch_sharding, replicated
    from cnnx.train.state import create_train_state

    schedule = optax.constant_schedule(0.1)
    tx = optim.make_optimizer(optim_cfg or base_config().optim, schedule)
    create = functools.partial(
        create_train_state, model, tx, input_shape=(1, *tuple(input_shape)[1:])
    )
    abstract = jax.eval_shape(create, jax.random.PRNGKey(0))
    min_size = sharding.DEFAULT_MIN_SIZE if min_size is None else min_size
    shardings = sharding.state_shardings(abstract, mesh, rules, min_size)
    batch = {
        "image": jax.ShapeDtypeStruct(
            tuple(input_shape), jnp.float32, sharding=batch_sharding(mesh)
        ),
        "label": jax.ShapeDtypeStruct((input_shape[0],), jnp.int32, sharding=batch_sharding(mesh)),
    }
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated(mesh))
    step = jax.jit(
        functools.partial(train_steps.train_step, num_classes=num_classes, schedule=schedule),
        in_shardings=(shardings, batch_sharding(mesh), replicated(mesh)),
        out_shardings=(shardings, replicated(mesh)),
        donate_argnums=(0,),
    )
    state = sharding.with_shardings(abstract, shardings)
    m = step.lower(state, batch, rng).compile(compiler_options).memory_analysis()
    figures = CompiledMemory(
        int(m.argument_size_in_bytes),
        int(m.output_size_in_bytes),
        int(m.temp_size_in_bytes),
        int(getattr(m, "alias_size_in_bytes", 0)),
    )
    return figures, sharding.bytes_per_device(abstract, shardings)
