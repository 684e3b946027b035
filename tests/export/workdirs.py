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
    """A model's initial variables with non-trivial BatchNorm statistics, as numpy."""
    x = jnp.zeros((1, resolution, resolution, channels))
    variables = jax.device_get(model.init(jax.random.PRNGKey(seed), x, train=False))
    rng = np.random.default_rng(seed)
    flat = traverse_util.flatten_dict(variables)
    for path, v in flat.items():
        if path[-1] == "mean":
            flat[path] = 0.1 * rng.standard_normal(v.shape, dtype=np.float32)
        elif path[-1] == "var":
            flat[path] = 0.5 + rng.random(v.shape, dtype=np.float32)
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
