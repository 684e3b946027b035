"""Workdirs holding a given model's variables, as training leaves them (config.json and an
orbax checkpoint), without training."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnx.train import workdir as wd
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.state import TrainState


def random_variables(model, resolution: int, channels: int = 3, seed: int = 0) -> dict:
    """Random variables of a model's shapes at a sane scale (kernels ~ 1/sqrt(fan-in), norm
    scales ~ 1, BatchNorm variances in [0.5, 1.5]), as numpy; nothing is compiled."""
    x = jnp.zeros((1, resolution, resolution, channels))
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in traverse_util.flatten_dict(dict(shapes)).items():
        noise = rng.standard_normal(leaf.shape, dtype=np.float32)
        if path[-1] == "kernel":
            flat[path] = noise / np.sqrt(max(1, int(np.prod(leaf.shape[:-1]))))
        elif path[-1] == "scale":
            flat[path] = 1.0 + 0.1 * noise
        elif path[-1] == "var":
            flat[path] = 0.5 + rng.random(leaf.shape, dtype=np.float32)
        else:
            flat[path] = 0.1 * noise
    return traverse_util.unflatten_dict(flat)


def write_workdir(path, config, variables, *, step: int = 0, ema=None) -> str:
    """`path` as a run of `config` whose checkpoint `step` holds `variables` (and `ema`)."""
    ema = ema or {}
    state = TrainState(
        step=jnp.asarray(step, jnp.int32),
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        opt_state=(),
        ema_params=ema.get("params"),
        ema_batch_stats=ema.get("batch_stats"),
    )
    ckpt = Checkpointer(wd.checkpoints_dir(str(path)), asynchronous=False)
    ckpt.save(step, state, wait=True)
    ckpt.close()
    wd.write_text_atomic(wd.config_path(str(path)), config.to_json_best_effort(indent=2))
    return str(path)
