"""Device mesh and shardings (the pjit model: one program over all devices of all hosts)."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnnx.errors import ConfigError


def make_mesh(data: int = -1) -> Mesh:
    """A 1-D mesh with axis 'data' over `data` devices (-1: all of them, on all hosts)."""
    devices = jax.devices()
    n = len(devices) if data in (-1, None) else data
    if n > len(devices) or n < 1:
        raise ConfigError(
            f"--config.mesh.data={data} asks for {n} devices but {len(devices)} are available."
        )
    return Mesh(np.array(devices[:n]), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over 'data'."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch(global_batch: int, mesh: Mesh, what: str = "train.batch_size") -> None:
    """Fails early (before any compilation) when a batch does not split over the devices."""
    n = mesh.shape["data"]
    if global_batch % n:
        raise ConfigError(
            f"--config.{what}={global_batch} does not divide over the {n} devices of the "
            f"mesh; use a multiple of {n}."
        )
