"""Multi-process start-up: `jax.distributed.initialize` when several processes are configured.

Explicit flags win; otherwise the usual cluster environments are detected (Cloud TPU pods,
SLURM, Open MPI, or JAX_COORDINATOR_ADDRESS), where `jax.distributed.initialize()` finds its
arguments itself. A single process on one machine initialises nothing.
"""

import os

import jax

_CLUSTER_HINTS = (
    ("JAX_COORDINATOR_ADDRESS", None),
    ("SLURM_NTASKS", lambda v: int(v) > 1),
    ("OMPI_COMM_WORLD_SIZE", lambda v: int(v) > 1),
    ("TPU_WORKER_HOSTNAMES", lambda v: "," in v),
)


def in_cluster() -> bool:
    for var, check in _CLUSTER_HINTS:
        value = os.environ.get(var)
        if value and (check is None or check(value)):
            return True
    return False


def maybe_initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cpu_collectives: str = "gloo",
) -> bool:
    """Initialises jax.distributed if asked to (or in a detected cluster). Returns whether it did.

    Args:
      coordinator_address: 'host:port' of process 0.
      num_processes: total processes.
      process_id: this process's index.
      cpu_collectives: CPU collectives implementation for multi-process CPU runs (gloo).
    """
    if coordinator_address or (num_processes and num_processes > 1):
        if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
            jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
        return True
    if in_cluster():
        jax.distributed.initialize()
        return True
    return False
