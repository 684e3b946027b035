"""The steps the memory, speed and benchmark tools measure: the eval forward pass, and the
trainer's own train step (`cnnx.train.steps.make_train_step`) under the config schema's
defaults.

The train step is the one `train.py` runs with `configs/default.py`'s step options and the
schema's optimizer (SGD, momentum 0.9, weight decay 1e-4, cosine schedule; see
`cnnx.config_schema.base_config`): forward, softmax cross entropy, backward, the optimizer
update and the step's metrics, the state donated. So "train speed" and "train memory" mean
the same thing in `scripts/summarize.py`, `scripts/benchmark.py` and
`scripts/memory_report.py` as in training.
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, Sharding

# The schedule's length for a measured step (the schedule's value does not change its cost).
_STEPS_PER_EPOCH, _TOTAL_STEPS = 1000, 100_000


def abstract_variables(model, input_shape: Sequence[int], dtype=jnp.float32):
    """Variable shapes (`ShapeDtypeStruct`s) of a model, without allocating anything."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)


def inference_fn(model):
    """`f(variables, x) -> logits` in eval mode."""

    def infer(variables, x):
        return model.apply(variables, x, train=False)

    return infer


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    """The trainer's step for one model, batch shape and mesh, before any allocation.

    Attributes:
      step: the jitted, donated `step(state, batch, rng) -> (state, metrics)`.
      create: `create(rng) -> TrainState` (for `cnnx.train.state.jit_initialize`).
      abstract_state: the state's `ShapeDtypeStruct`s.
      state_shardings: where each state leaf lives (`cnnx.parallel.sharding.state_shardings`).
      batch_sharding: the batch's sharding (over 'data' and 'fsdp').
      replicated: the replicated sharding (the key, the metrics).
      input_shape: the global (batch, height, width, channels).
    """

    step: Callable
    create: Callable
    abstract_state: object
    state_shardings: object
    batch_sharding: Sharding
    replicated: Sharding
    input_shape: tuple

    def abstract_args(self):
        """(state, batch, rng) as `ShapeDtypeStruct`s carrying their shardings, for
        `step.lower(*args)`."""
        from cnnx.parallel import sharding

        state = sharding.with_shardings(self.abstract_state, self.state_shardings)
        b = self.input_shape[0]
        batch = {
            "image": jax.ShapeDtypeStruct(
                self.input_shape, jnp.float32, sharding=self.batch_sharding
            ),
            "label": jax.ShapeDtypeStruct((b,), jnp.int32, sharding=self.batch_sharding),
        }
        rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=self.replicated)
        return state, batch, rng


def train_setup(
    model,
    input_shape: Sequence[int],
    num_classes: int,
    mesh: Mesh | None = None,
    *,
    optim_cfg=None,
    rules=None,
    min_size: int | None = None,
) -> TrainSetup:
    """The trainer's step for `model` with the schema's optimizer and step options.

    Args:
      model: a Flax module.
      input_shape: global (batch, height, width, channels).
      num_classes: label range of the loss.
      mesh: a mesh from `cnnx.parallel.mesh.make_mesh` (default: one device).
      optim_cfg: an `optim` config section (default: the schema's).
      rules, min_size: sharding rules and the 'auto' threshold (`cnnx.parallel.sharding`;
        default `sharding.DEFAULT_MIN_SIZE`).

    Returns:
      A `TrainSetup`.
    """
    # cnnx.train pulls in the data pipeline (TensorFlow): loaded only when a step is built.
    from cnnx.config_schema import base_config
    from cnnx.parallel import sharding
    from cnnx.parallel.mesh import batch_sharding, make_mesh, replicated
    from cnnx.train import optim, steps
    from cnnx.train.state import create_train_state

    config = base_config()
    mesh = mesh if mesh is not None else make_mesh(1)
    input_shape = tuple(int(d) for d in input_shape)
    peak_lr = optim.scaled_lr(config.optim.base_lr, input_shape[0])
    schedule = optim.make_schedule(config.schedule, peak_lr, _STEPS_PER_EPOCH, _TOTAL_STEPS)
    tx = optim.make_optimizer(optim_cfg or config.optim, schedule)
    create = functools.partial(create_train_state, model, tx, input_shape=(1, *input_shape[1:]))
    abstract = jax.eval_shape(create, jax.random.PRNGKey(0))
    min_size = sharding.DEFAULT_MIN_SIZE if min_size is None else min_size
    shardings = sharding.state_shardings(abstract, mesh, rules, min_size)
    step = steps.make_train_step(
        num_classes=num_classes,
        schedule=schedule,
        mesh=mesh,
        state_shardings=shardings,
        options=steps.StepOptions.from_config(config.train),
    )
    return TrainSetup(
        step=step,
        create=create,
        abstract_state=abstract,
        state_shardings=shardings,
        batch_sharding=batch_sharding(mesh),
        replicated=replicated(mesh),
        input_shape=input_shape,
    )
