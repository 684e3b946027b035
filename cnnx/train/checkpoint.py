"""Checkpoints with orbax: asynchronous saves, N kept, newest restored automatically.

Orbax writes each step into a temporary directory (`<step>.orbax-checkpoint-tmp`) and renames
it only when complete, so an interrupted save (preemption, kill -9, full disk) never replaces
the previous good checkpoint; `latest_step` only sees finished ones, and leftover temporary
directories are deleted when the next training run opens the directory. Every process takes part in
saving and restoring (each writes its own shards); only array leaves of the `TrainState` are
stored.

Write failures (a full disk, a quota, a permission) surface from tensorstore as `ValueError`s
carrying the OS error, and for asynchronous saves only when the background write is waited
for (the next save, `wait` or `close`); every one of those calls turns them into a
`CheckpointError` that says which step failed and that the earlier checkpoints are intact.
"""

import os
import re

import jax
import numpy as np
import orbax.checkpoint as ocp

from cnnx.errors import CheckpointError

# What a failed write raises: OSError from Python file code, ValueError (tensorstore, with
# "[os_error_code=28]" for ENOSPC) and RuntimeError / TimeoutError from orbax's threads.
_WRITE_ERRORS = (OSError, ValueError, RuntimeError)


def _array_handler_registry() -> ocp.type_handlers.TypeHandlerRegistry:
    """orbax's default handlers, with replica-parallel saving only across several processes.

    Replica-parallel saving splits every replicated array into one slice per replica so that
    the hosts holding copies share the writing. Within one process all the copies are on the
    same host, so it only costs: each slice is a jitted `slice` compiled per shape and device
    (on 8 CPU devices a shallow EfficientNet's first save took 23 s, 441 compilations, where
    the whole array from one replica takes well under a second).
    """
    from orbax.checkpoint._src.metadata import array_metadata_store  # as orbax's default

    handlers = ocp.type_handlers
    return handlers.create_type_handler_registry(
        (int, handlers.ScalarHandler()),
        (float, handlers.ScalarHandler()),
        (np.number, handlers.ScalarHandler()),
        (np.ndarray, handlers.NumpyHandler()),
        (
            jax.Array,
            handlers.ArrayHandler(
                use_replica_parallel=jax.process_count() > 1,
                array_metadata_store=array_metadata_store.Store(),
            ),
        ),
    )


def _absolute(directory: str) -> str:
    """Local paths made absolute; URLs (gs://bucket/dir) kept as they are."""
    return directory if "://" in directory else os.path.abspath(directory)


class Checkpointer:
    """A thin wrapper around `ocp.CheckpointManager` for `TrainState`s."""

    def __init__(
        self,
        directory: str,
        *,
        max_to_keep: int = 3,
        asynchronous: bool = True,
        cleanup: bool = False,
    ):
        """Opens (or creates) a checkpoint directory.

        Args:
          directory: where the steps go (local path or gs://...).
          max_to_keep: newest complete checkpoints kept.
          asynchronous: save in a background thread.
          cleanup: delete what interrupted saves left (`*.orbax-checkpoint-tmp`). Only the
            run that writes the directory may do so: an eval.py reading it meanwhile would
            delete the save in flight.
        """
        self.directory = _absolute(directory)
        self._saving: int | None = None  # step of the save that may still be in flight
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=asynchronous,
                create=True,
                cleanup_tmp_directories=cleanup,
            ),
            item_handlers=ocp.PyTreeCheckpointHandler(
                type_handler_registry=_array_handler_registry()
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def _failed(self, step: int | None, error: Exception) -> CheckpointError:
        text = " ".join(str(error).split())
        os_error = re.search(r"([^:\"]+?)\s*\[os_error_code='(\d+)'\]", text)
        if os_error:  # tensorstore: '... Failed to write N bytes: No space left on device'
            reason, errno = f"{os_error.group(1)} (errno {os_error.group(2)})", os_error.group(2)
        else:
            reason = f"{type(error).__name__}: {text[:400]}"
            errno = str(getattr(error, "errno", ""))
        full = errno in ("27", "28", "122")  # EFBIG, ENOSPC, EDQUOT
        hint = "free disk space (or raise the quota)" if full else "fix the cause"
        finished = [s for s in self.all_steps() if s != step]
        kept = f"step {max(finished)}" if finished else "none yet"
        return CheckpointError(
            f"Saving checkpoint {step} to {self.directory} failed: {reason}. Earlier "
            f"checkpoints are intact (newest complete: {kept}); {hint} and start the same "
            "command again to resume from it, or pass another --workdir."
        )

    def save(self, step: int, state, *, wait: bool = False) -> None:
        """Starts saving `state` as `step` (in the background when asynchronous).

        Raises:
          CheckpointError: this save, or the previous asynchronous one, failed to write.
        """
        try:
            self.wait()  # a failed background write is reported before starting another
            self._saving = step
            self.manager.save(step, args=ocp.args.PyTreeSave(state), force=True)
            if wait:
                self.wait()
        except _WRITE_ERRORS as e:
            raise self._failed(step, e) from None

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
            restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
            return self.manager.restore(
                step, args=ocp.args.PyTreeRestore(abstract, restore_args=restore_args)
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"Checkpoint {step} in {self.directory} does not fit this model/config "
                f"(different architecture, head size or optimizer?): {str(e)[:500]}"
            ) from None

    def wait(self) -> None:
        """Blocks until the background save is written (or raises `CheckpointError`)."""
        try:
            self.manager.wait_until_finished()
        except _WRITE_ERRORS as e:
            raise self._failed(self._saving, e) from None
        self._saving = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
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
    from etils import epath

    directory = (
        os.path.join(path, "checkpoints") if epath.Path(path, "checkpoints").is_dir() else path
    )
    manager = ocp.CheckpointManager(
        _absolute(directory), item_handlers=ocp.PyTreeCheckpointHandler()
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
