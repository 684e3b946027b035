"""Multi-process start-up: `jax.distributed.initialize` when several processes are configured.

Explicit flags (`--coordinator_address`, `--num_processes`, `--process_id`) win. Otherwise the
usual cluster environments are detected, and `jax.distributed.initialize()` reads its
arguments from them:

- Cloud TPU pod slices (several `TPU_WORKER_HOSTNAMES`);
- SLURM job steps (`srun`: `SLURM_NTASKS` > 1 and `SLURM_STEP_NODELIST`; a batch script
  outside `srun` is one process and initialises nothing);
- Open MPI (`mpirun`, `OMPI_COMM_WORLD_SIZE` > 1). Open MPI 4 publishes the coordinator
  (`OMPI_MCA_orte_hnp_uri`); Open MPI 5 does not, so there the process count and index come
  from `OMPI_COMM_WORLD_*` and the coordinator from `JAX_COORDINATOR_ADDRESS`;
- `JAX_COORDINATOR_ADDRESS` with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` (any launcher).

A single process on one machine initialises nothing.

Every entry point (train.py, eval.py, scripts/fixres.py, scripts/sweep.py) takes the same three
flags: absl programs call `define_flags()` at import and `initialize_from_flags()` in `main`;
argparse programs `add_arguments(parser)` and `initialize_from_args(args)`. Whatever runs a
model then does so on every process (each reads its share of the data, and the sums are
reduced on device), while only process 0 (`is_writer()`) writes results files and plots.
"""

import argparse
import os

import jax
from absl import flags

from cnnx.errors import ConfigError

# name: (type, help). The one definition of the multi-process flags, for absl and argparse.
FLAGS = {
    "coordinator_address": (
        str,
        "host:port of process 0, when running several processes (one per host); "
        "detected automatically on Cloud TPU, SLURM (srun) and Open MPI.",
    ),
    "num_processes": (int, "Number of processes (with --coordinator_address)."),
    "process_id": (int, "Index of this process, 0 .. num_processes - 1."),
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines --coordinator_address, --num_processes and --process_id as absl flags."""
    for name, (kind, help_text) in FLAGS.items():
        define = flags.DEFINE_string if kind is str else flags.DEFINE_integer
        define(name, None, help_text, flag_values=flag_values)


def initialize_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
    """`maybe_initialize` with the values of the flags `define_flags` defined."""
    return maybe_initialize(*(flag_values[name].value for name in FLAGS))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the same three flags to an argparse parser (scripts/sweep.py, the sweep worker)."""
    for name, (kind, help_text) in FLAGS.items():
        parser.add_argument(f"--{name}", type=kind, default=None, help=help_text)


def initialize_from_args(args: argparse.Namespace) -> bool:
    """`maybe_initialize` with the values `add_arguments` parsed."""
    return maybe_initialize(*(getattr(args, name) for name in FLAGS))


def as_arguments(args: argparse.Namespace) -> list[str]:
    """The flags given in `args` as command-line arguments, to pass on to a child process."""
    return [f"--{n}={getattr(args, n)}" for n in FLAGS if getattr(args, n) is not None]


def is_writer() -> bool:
    """Whether this process writes results files, tables and plots (process 0 does)."""
    return jax.process_index() == 0


def _many(var: str) -> bool:
    try:
        return int(os.environ.get(var, "1")) > 1
    except ValueError:
        return False


def cluster() -> str | None:
    """The multi-process environment this process runs in, or None."""
    if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        return "tpu"
    if _many("SLURM_NTASKS") and "SLURM_STEP_NODELIST" in os.environ:
        return "slurm"
    if _many("OMPI_COMM_WORLD_SIZE"):
        return "ompi" if "OMPI_MCA_orte_hnp_uri" in os.environ else "ompi5"
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return "env"
    return None


def _use_cpu_collectives(implementation: str) -> None:
    """Multi-process CPU runs need a collectives implementation (gloo)."""
    platforms = str(jax.config.jax_platforms or "")
    if platforms in ("", "None") or "cpu" in platforms:
        jax.config.update("jax_cpu_collectives_implementation", implementation)


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

    Raises:
      ConfigError: the environment says several processes but not how to reach process 0.
    """
    kind = cluster()
    if coordinator_address or (num_processes and num_processes > 1):
        if kind is None and not (coordinator_address and num_processes and process_id is not None):
            raise ConfigError(
                "Several processes need all of --coordinator_address=HOST:PORT (process 0's), "
                "--num_processes=N and --process_id=I (0..N-1, a different one per process)."
            )
        _use_cpu_collectives(cpu_collectives)
        jax.distributed.initialize(  # what is not given comes from the cluster environment
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
        return True
    if kind is None:
        return False
    _use_cpu_collectives(cpu_collectives)
    if kind in ("ompi5", "env"):
        address = os.environ.get("JAX_COORDINATOR_ADDRESS")
        size, rank = (
            ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK")
            if kind == "ompi5"
            else ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
        )
        if not (address and os.environ.get(size) and os.environ.get(rank)):
            raise ConfigError(
                f"Several processes, but not where process 0 is: set JAX_COORDINATOR_ADDRESS="
                f"HOST:PORT of process 0 together with {size} and {rank} (Open MPI 5: mpirun "
                "-x JAX_COORDINATOR_ADDRESS=host0:1234 ...), or pass --coordinator_address, "
                "--num_processes and --process_id."
            )
        jax.distributed.initialize(
            coordinator_address=address,
            num_processes=int(os.environ[size]),
            process_id=int(os.environ[rank]),
        )
        return True
    jax.distributed.initialize()  # reads the TPU / SLURM / Open MPI 4 environment
    return True
