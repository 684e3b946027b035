"""Device mesh and shardings (the pjit model: one program over all devices of all hosts).

The mesh has three named axes, sized by the `mesh` config section:

  data   pure data parallelism: the batch is split, parameters are replicated;
  fsdp   fully sharded data parallelism (ZeRO-3): the batch is split here too, but parameters,
         gradients and optimizer state are sharded over this axis (cnnx.parallel.sharding) and
         XLA all-gathers each weight where it is used;
  model  tensor parallelism: the batch is replicated, large weights are split by the
         sharding rules and XLA inserts the collectives.

The batch is sharded over ('data', 'fsdp') together, so data × fsdp must divide it. Every size
is checked here, with a message that says what to change, before anything is compiled.
"""

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnnx.errors import ConfigError

AXES = ("data", "fsdp", "model")
# Mesh axes the batch (leading) dimension is split over.
BATCH_AXES = ("data", "fsdp")


def _size(name: str, value, allow_rest: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -1:
        rest = "-1 (the remaining devices) or " if allow_rest else ""
        raise ConfigError(f"--config.mesh.{name}={value!r} must be {rest}a positive integer.")
    if value == -1 and not allow_rest:
        raise ConfigError(
            f"--config.mesh.{name}=-1: only mesh.data may be -1 (the remaining devices); give "
            f"{name} a positive size."
        )
    return value


def mesh_shape(
    num_devices: int, data: int | None = -1, fsdp: int = 1, model: int = 1
) -> tuple[int, int, int]:
    """(data, fsdp, model) sizes for `num_devices` devices, with `data=-1` the rest.

    Explicit sizes whose product is below the device count use the first devices (handy for
    1-device comparisons on one host); a multi-process run must use every device.

    Raises:
      ConfigError: sizes that are not positive, that do not divide the devices, or that ask
        for more devices than there are.
    """
    data = -1 if data is None else _size("data", data, allow_rest=True)
    fsdp, model = _size("fsdp", fsdp), _size("model", model)
    if data == -1:
        if num_devices % (fsdp * model):
            raise ConfigError(
                f"--config.mesh.fsdp={fsdp} × --config.mesh.model={model} = {fsdp * model} does "
                f"not divide the {num_devices} devices; choose sizes whose product divides "
                f"{num_devices} (mesh.data=-1 takes the remaining factor)."
            )
        data = num_devices // (fsdp * model)
    if data > 1 and fsdp > 1 and model > 1:
        # XLA (jaxlib 0.10.2, Shardy and GSPMD alike) partitions some programs wrongly when the
        # batch is split over two axes and the features over a third: the gradients come out
        # wrong, with no error (tests/parallel/test_sharding.py keeps a 3-line reproduction;
        # cf. openxla/xla#40034). Two of the three axes are fine.
        raise ConfigError(
            f"The mesh data×fsdp×model = {data}×{fsdp}×{model} uses all three axes, which XLA "
            "currently compiles to wrong gradients; use two of them, e.g. "
            f"--config.mesh.data=1 --config.mesh.fsdp={data * fsdp} --config.mesh.model={model}."
        )
    total = data * fsdp * model
    if total > num_devices:
        raise ConfigError(
            f"The mesh data×fsdp×model = {data}×{fsdp}×{model} asks for {total} devices but "
            f"{num_devices} are available; lower the sizes or set --config.mesh.data=-1."
        )
    if total < num_devices and jax.process_count() > 1:
        raise ConfigError(
            f"The mesh data×fsdp×model = {data}×{fsdp}×{model} uses {total} of the "
            f"{num_devices} devices; a multi-process run must use all of them "
            "(set --config.mesh.data=-1)."
        )
    return data, fsdp, model


def make_mesh(data: int | None = -1, fsdp: int = 1, model: int = 1, *, devices=None) -> Mesh:
    """A ('data', 'fsdp', 'model') mesh over `devices` (default: all devices of all hosts).

    Args:
      data: devices on the 'data' axis; -1: all devices not taken by fsdp × model.
      fsdp: devices on the 'fsdp' axis (parameters sharded, batch split).
      model: devices on the 'model' axis (tensor parallelism).
      devices: the devices to use (default `jax.devices()`); tests pass subsets.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(len(devices), data, fsdp, model)
    chosen = devices[: math.prod(shape)]
    grid = None
    if chosen[0].platform == "tpu":
        # The physical torus: neighbouring mesh coordinates get neighbouring chips.
        from jax.experimental import mesh_utils

        try:
            grid = mesh_utils.create_device_mesh(shape, chosen, allow_split_physical_axes=True)
        except (ValueError, NotImplementedError, AssertionError):
            grid = None
    if grid is None:
        # jax.devices() lists each process's devices together, so every process holds a
        # contiguous block of the batch (what make_array_from_process_local_data expects).
        grid = np.array(chosen).reshape(shape)
    return Mesh(grid, AXES)


def mesh_from_config(mesh_cfg, devices=None) -> Mesh:
    """`make_mesh` with the sizes of a config's `mesh` section."""
    return make_mesh(
        mesh_cfg.data, mesh_cfg.get("fsdp", 1), mesh_cfg.get("model", 1), devices=devices
    )


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The axes of `mesh` that split the batch (meshes built elsewhere may lack 'fsdp')."""
    return tuple(a for a in BATCH_AXES if a in mesh.axis_names)


def batch_shards(mesh: Mesh) -> int:
    """Into how many blocks the batch is split (data × fsdp)."""
    return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over 'data' and 'fsdp' together."""
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch(global_batch: int, mesh: Mesh, what: str = "train.batch_size") -> None:
    """Fails early (before any compilation) when a batch does not split over the devices."""
    n = batch_shards(mesh)
    if global_batch % n:
        sizes = " × ".join(f"{a}={mesh.shape[a]}" for a in batch_axes(mesh))
        raise ConfigError(
            f"--config.{what}={global_batch} does not divide over the {n} batch shards of the "
            f"mesh ({sizes}); use a multiple of {n}."
        )
