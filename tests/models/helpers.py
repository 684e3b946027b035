"""Shared helpers for model tests."""

import jax
import jax.numpy as jnp
import numpy as np

from cnnx import models


def abstract_variables(name: str, resolution: int | None = None, **overrides):
    """Variable shapes of a registered model, without allocating or compiling anything."""
    spec = models.get_spec(name)
    model = models.create(name, **overrides)
    r = resolution or spec.test_resolution
    x = jnp.zeros((1, r, r, spec.in_chans))
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))


def count_params(variables) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(variables["params"])))


def torch_parity(name: str, torch_model, resolution: int, batch: int = 2, **overrides) -> float:
    """Max relative error between a torch model (eval mode) and its cnnx conversion."""
    import torch

    from cnnx import convert

    spec = models.get_spec(name)
    torch_model = torch_model.eval()
    rng = np.random.RandomState(0)
    x = rng.randn(batch, spec.in_chans, resolution, resolution).astype(np.float32)
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x))
    if isinstance(ref, tuple):  # torchvision aux-head models in eval return logits only
        ref = ref[0]
    ref = ref.numpy()
    variables = convert.from_torch(
        name, torch_model.state_dict(), resolution=resolution, **overrides
    )
    model = models.create(name, **overrides)
    out = np.asarray(model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def unused_positions(model, size: int, channels: int = 3):
    """`cnnx.models.coverage.unused_input_positions` of a model's eval logits on one
    size x size image: per axis of (1, size, size, channels), which positions reach no logit."""
    from cnnx.models.coverage import unused_input_positions

    def logits(x):
        return model.init_with_output(jax.random.PRNGKey(0), x, train=False)[0]

    return unused_input_positions(logits, jax.ShapeDtypeStruct((1, size, size, channels), "f4"))
