"""The train state's size against the memory it must fit, checked before it is created.

A state that cannot fit (e.g. `--config.model.width_mult=1000`: 450 GB) used to be logged and
then initialised: the process allocated until it stalled, at 0% CPU, ignoring SIGTERM. The
sizes come from `jax.eval_shape` (nothing allocated) and the shardings the state will have,
so a sharded state (`config.mesh.fsdp`, `config.mesh.model`) counts per device.

Memory available: an accelerator's `memory_stats()['bytes_limit']` per device; on the CPU all
local devices share the host's RAM (`host_memory_available`). The state is a lower
bound of what training needs (gradients, activations and the optimizer's temporaries come on
top): the check only refuses what cannot possibly fit.
"""

import jax
import numpy as np

from cnnx.errors import ConfigError


def _bytes_per_device(abstract, shardings) -> int:
    """Bytes of the largest shard set any one device holds."""
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
        shape = sharding.shard_shape(leaf.shape) if hasattr(sharding, "shard_shape") else leaf.shape
        total += int(np.prod(shape)) * np.dtype(leaf.dtype).itemsize
    return total


def host_memory_available() -> int | None:
    """Bytes the host can still give this process: Linux's MemAvailable, capped by the
    cgroup's (v2) limit less its usage in a container; None where neither is known."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            limit = f.read().strip()
            if limit != "max":
                left = int(limit) - int(g.read())
                free = left if free is None else min(free, left)
    except (OSError, ValueError):
        pass
    return free


def _available() -> tuple[int, str] | None:
    """(bytes one device may use, where that figure comes from), or None when unknown."""
    device = jax.local_devices()[0]
    if device.platform == "cpu":
        free = host_memory_available()
        if free is None:
            return None
        devices = len(jax.local_devices())
        return free // devices, f"{free / 1e9:.1f} GB of host memory free for {devices} CPU devices"
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    limit = int(stats["bytes_limit"])
    return limit, f"{limit / 1e9:.1f} GB per {device.device_kind}"


def check_state_fits(abstract, shardings, what: str) -> None:
    """Refuses a train state that cannot fit the devices' memory.

    Args:
      abstract: the state's `jax.ShapeDtypeStruct` tree (`jax.eval_shape`).
      shardings: its shardings (same tree).
      what: the model, for the message.

    Raises:
      ConfigError: the state alone needs more than a device has (or, on the CPU, than the
        host has free), naming both sizes and the ways out.
    """
    available = _available()
    if available is None:
        return
    limit, where = available
    need = _bytes_per_device(abstract, shardings)
    if need <= limit:
        return
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
    raise ConfigError(
        f"The train state of {what} ({n_params / 1e6:,.0f} M parameters, with its optimizer "
        f"state and any EMA copies) needs {need / 1e9:.1f} GB per device, more than the {where}. "
        "Choose a smaller model (e.g. --config.model.width_mult), shard the state over more "
        "devices (--config.mesh.fsdp=N), or use a machine with more memory."
    )
