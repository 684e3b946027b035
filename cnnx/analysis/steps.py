"""The two steps the memory and speed tools measure: eval forward, and a training step.

The training step is forward + softmax cross entropy + backward + an SGD update (params and
batch statistics returned), i.e. the least any optimiser needs; Adam-style optimisers add
two parameter-sized buffers on top (reported by `memory.param_bytes`).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def abstract_variables(model, input_shape: Sequence[int], dtype=jnp.float32):
    """Variable shapes (`ShapeDtypeStruct`s) of a model, without allocating anything."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)


def inference_fn(model):
    """`f(variables, x) -> logits` in eval mode."""

    def infer(variables, x):
        return model.apply(variables, x, train=False)

    return infer


def train_step_fn(model, lr: float = 0.1):
    """`f(variables, x, labels, rng) -> (new variables, loss)`: forward, backward, SGD."""

    def step(variables, x, labels, rng):
        params = variables["params"]
        rest = {k: v for k, v in variables.items() if k != "params"}

        def loss_fn(p):
            out, updates = model.apply(
                {"params": p, **rest},
                x,
                train=True,
                rngs={"dropout": rng},
                mutable=[k for k in rest],
            )
            logits = out[0] if isinstance(out, tuple) else out
            logp = jax.nn.log_softmax(logits.astype(jnp.float32))
            loss = -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))
            return loss, updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        new_params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return {"params": new_params, **updates}, loss

    return step


def abstract_args(model, input_shape: Sequence[int], num_classes: int):
    """Abstract arguments of (inference, train step)."""
    variables = abstract_variables(model, input_shape)
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    labels = jax.ShapeDtypeStruct((input_shape[0],), jnp.int32)
    rng = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    return (variables, x), (variables, x, labels, rng)
