"""Checkpoints with orbax: asynchronous saves, N kept, newest restored automatically.

Orbax writes each step into a temporary directory and renames it only when complete, so an
interrupted save (preemption, kill -9, full disk) never replaces the previous good checkpoint;
`latest_step` only sees finished ones. Every process takes part in saving and restoring (each
writes its own shards); only array leaves of the `TrainState` are stored.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from cnnx.errors import CheckpointError


class Checkpointer:
    """A thin wrapper around `ocp.CheckpointManager` for `TrainState`s."""

    def __init__(self, directory: str, *, max_to_keep: int = 3, asynchronous: bool = True):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=asynchronous,
                create=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, *, wait: bool = False) -> None:
        try:
            self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
            if wait:
                self.manager.wait_until_finished()
        except OSError as e:
            raise CheckpointError(
                f"Saving checkpoint {step} to {self.directory} failed ({e}). Earlier "
                "checkpoints are untouched; free disk space or change --workdir and resume."
            ) from None

    def restore(self, state_template, step: int | None = None):
        """Restores into the structure, shapes and shardings of `state_template`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint found in {self.directory}.")
        abstract = jax.tree.map(
            lambda x: (
                jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
                if hasattr(x, "sharding")
                else x
            ),
            state_template,
        )
        try:
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"Checkpoint {step} in {self.directory} does not fit this model/config "
                f"(different architecture, head size or optimizer?): {str(e)[:500]}"
            ) from None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def load_variables(path: str, step: int | None = None, ema: bool = False) -> dict:
    """Model variables from a checkpoint without rebuilding the training state.

    Args:
      path: a workdir (with checkpoints/ inside) or the checkpoints directory itself.
      step: checkpoint step (default: newest).
      ema: return the EMA weights instead of the raw ones (when the run kept them).

    Returns:
      `{'params': ..., 'batch_stats': ...}` as numpy arrays on the host.
    """
    directory = (
        os.path.join(path, "checkpoints")
        if os.path.isdir(os.path.join(path, "checkpoints"))
        else path
    )
    manager = ocp.CheckpointManager(
        os.path.abspath(directory), item_handlers=ocp.PyTreeCheckpointHandler()
    )
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"No checkpoint found in {directory}.")
    # Restore every leaf as a host numpy array, whatever mesh it was saved from.
    metadata = manager.item_metadata(step)
    tree = getattr(metadata, "tree", metadata)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    raw = manager.restore(step, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    manager.close()
    prefix = "ema_" if ema else ""
    if raw.get(f"{prefix}params") is None:
        raise CheckpointError(f"Checkpoint {step} in {directory} has no {prefix}params.")
    return {"params": raw[f"{prefix}params"], "batch_stats": raw.get(f"{prefix}batch_stats") or {}}


def load_params(path: str, step: int | None = None, ema: bool = False):
    """The parameters of a checkpoint (see `load_variables`)."""
    return load_variables(path, step, ema)["params"]
