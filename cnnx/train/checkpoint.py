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

Integrity: every save records a fingerprint of each array (`cnnx.train.fingerprint`, computed
on device where the array lives, so it costs one pass over the state and no re-reading of
files, local or gs://) in the step's own metadata, committed with the step. A restore first
compares the saved tree with the template (a different model is a `CheckpointMismatch`, found
before any array is read), then reads the arrays and checks their fingerprints. A step that is
incomplete, unreadable or fails its fingerprints is a `CheckpointDamaged`: the training run
(the directory's writer) moves it aside to `<step>.damaged` and resumes from the newest intact
step, saying so; readers (eval.py, fine-tuning) stop and name the intact steps. A reader of a
directory a run is writing lists the steps again when the one it read was deleted meanwhile
(the writer's max_to_keep) and reads the newest then there; it never advises moving steps while
the workdir's lock is held. Checkpoints
written before fingerprints were recorded restore unverified, with a warning.
"""

import os
import re
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from cnnx.errors import CheckpointDamaged, CheckpointError, CheckpointMismatch
from cnnx.train import workdir as workdir_layout
from cnnx.train.fingerprint import ALGORITHM, fingerprints, named_leaves

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
    # As orbax's default registry does; orbax-checkpoint 0.12 exports no public name for it.
    from orbax.checkpoint._src.metadata import array_metadata_store

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
    return directory if workdir_layout.is_remote(directory) else os.path.abspath(directory)


# A reader lists the steps again when the one it read was deleted meanwhile, this many times.
_RELISTS = 5
_DELETION_WAITS = 20  # x 0.1 s for a step a running writer is deleting to disappear

# Saved in each step's metadata under this key, with `fingerprint.ALGORITHM` (the format).
_METADATA_KEY = "cnnx_checksums"
_unverified_warned: set[str] = set()  # directories already warned about (once each)


# --- Workdirs ------------------------------------------------------------------------------


def _ignore_abandoned_io() -> None:
    """Drops the noise of the reads and writes a failed restore or save abandons, and
    nothing else.

    When one array of a restore (or save) fails, orbax closes its event loop while
    tensorstore still reads (writes) the others; as each finishes, tensorstore's callback
    meets the closed loop and reports `RuntimeError('Event loop is closed')` through
    `sys.unraisablehook`, and orbax's abandoned read coroutines report their own failure
    (the damage the `error:` line already names) the same way when they are collected:
    dozens of tracebacks after the line that ended the run. Those operations are dead
    weight: only these two are dropped, everything else still reaches the previous hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_cnnx_abandoned_reads", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        code = getattr(unraisable.object, "cr_code", None)  # an abandoned coroutine
        if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
            return
        previous(unraisable)

    hook._cnnx_abandoned_reads = True
    sys.unraisablehook = hook


# --- Checkpointer --------------------------------------------------------------------------


def _short(error: Exception) -> str:
    """The innermost cause of an error, on one line (tensorstore wraps the useful one)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def _damaged(step: int, why: str) -> CheckpointDamaged:
    """`CheckpointDamaged` for one step; `.step` says which."""
    error = CheckpointDamaged(f"{step} is {why}")
    error.step = step
    return error


def _steps_text(steps) -> str:
    return ", ".join(str(s) for s in sorted(steps, reverse=True)) or "none"


class Checkpointer:
    """A thin wrapper around `ocp.CheckpointManager` for `TrainState`s, with integrity checks."""

    def __init__(
        self,
        directory: str,
        *,
        max_to_keep: int = 3,
        asynchronous: bool = True,
        cleanup: bool = False,
        read_only: bool = False,
    ):
        """Opens (or creates) a checkpoint directory.

        Args:
          directory: where the steps go (local path or gs://...).
          max_to_keep: newest complete checkpoints kept.
          asynchronous: save in a background thread.
          cleanup: this is the run that writes the directory: delete what interrupted saves
            left (`*.orbax-checkpoint-tmp`), and on `restore` move a damaged newest step
            aside (`<step>.damaged`) and resume from the newest intact one. An eval.py reading
            the directory meanwhile must not: it would delete the save in flight.
          read_only: only read (eval.py, fine-tuning): nothing is created or written.
        """
        _ignore_abandoned_io()  # a failed background save's noise comes before its error
        self.directory = _absolute(directory)
        self._saving: int | None = None  # step of the save that may still be in flight
        self._cleanup = cleanup and not read_only
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=None if read_only else max_to_keep,
                enable_async_checkpointing=asynchronous,
                create=not read_only,
                cleanup_tmp_directories=self._cleanup,
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
        _ignore_abandoned_io()
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
        """Starts saving `state` as `step` (in the background when asynchronous), with the
        fingerprint of every array in the step's metadata.

        Raises:
          CheckpointError: this save, or the previous asynchronous one, failed to write.
        """
        try:
            self.wait()  # a failed background write is reported before starting another
            self._saving = step
            checksums = {"algorithm": ALGORITHM, "arrays": fingerprints(state)}
            self.manager.save(
                step,
                args=ocp.args.PyTreeSave(state),
                force=True,
                custom_metadata={_METADATA_KEY: checksums},
            )
            if wait:
                self.wait()
        except _WRITE_ERRORS as e:
            raise self._failed(step, e) from None

    def restore(self, state_template=None, step: int | None = None):
        """Restores a step, checked against its fingerprints.

        Args:
          state_template: the structure, shapes and shardings to restore into; None: the saved
            tree as host numpy arrays.
          step: the step (default: the newest intact one, see below).

        Returns:
          The restored tree.

        Raises:
          CheckpointError: no checkpoint, or no step `step` (the message lists those there).
          CheckpointMismatch: the saved arrays do not fit the template (another model).
          CheckpointDamaged: the step asked for is damaged, or (default step) the newest is
            and this is a reader, or every step is. The message names the intact steps.
            The writer (`cleanup=True`) moves a damaged newest step aside to
            `<step>.damaged` and resumes from the newest intact one, with a warning.
            A reader whose step is deleted while it reads it (by the run writing the
            directory, its max_to_keep) lists the steps again and reads the newest one there
            (default step), or says that the step asked for was deleted (CheckpointError).
        """
        vanished = []  # steps deleted (by the writer's max_to_keep) while being read
        for _ in range(_RELISTS):
            steps = self._listed()
            if not steps:
                raise CheckpointError(f"No checkpoint found in {self.directory}.")
            if step is not None and step not in steps:
                deleted = (
                    f" (deleted while it was being read: {self._writer()} keeps only the "
                    "newest steps; copy a step elsewhere to keep it)"
                    if step in vanished
                    else ""
                )
                raise CheckpointError(
                    f"No checkpoint {step} in {self.directory}{deleted}; the steps there are "
                    f"{_steps_text(steps)}."
                )
            damaged = []
            for candidate in [step] if step is not None else steps:
                try:
                    restored = self._restore_step(candidate, state_template)
                except CheckpointDamaged as e:
                    if self._vanished(candidate):
                        vanished.append(candidate)
                        break  # not damage: list the steps again
                    damaged.append(e)
                    if self._cleanup and step is None:
                        continue  # the writer tries the next older step
                    raise self._damaged_error(damaged, state_template, steps) from None
                if damaged:
                    self._set_aside(damaged, candidate)
                return restored
            else:
                raise self._damaged_error(damaged, state_template, steps)
        raise CheckpointError(
            f"The steps of {self.directory} ({_steps_text(vanished)}) were deleted while being "
            f"read, {_RELISTS} times: {self._writer()} saves and deletes faster than they can "
            "be read. Read once it has finished, or copy a step elsewhere and read that."
        )

    def _listed(self) -> list[int]:
        """The steps there now, newest first (listed afresh: a writer may have saved or
        deleted some since this Checkpointer opened)."""
        if not self._cleanup:
            self.manager.reload()
        return sorted(self.all_steps(), reverse=True)

    def _lock_file(self) -> epath.Path:
        """The lock of the workdir these checkpoints belong to (see `cnnx.train.lock`)."""
        return epath.Path(workdir_layout.lock_path(str(epath.Path(self.directory).parent)))

    def _writer(self) -> str:
        """Who may be changing the steps while this process reads them, in words."""
        if not self._cleanup and self._lock_file().exists():
            return f"the run holding {self._lock_file()}"
        return "the run writing it"

    def _vanished(self, step: int) -> bool:
        """Whether `step` failed because it was deleted (by the writer) rather than damaged.

        A writer's deletion of an old step (max_to_keep) is not atomic: a step being deleted
        still exists, emptying. While the workdir's lock is held, give it a moment.
        """
        if self._cleanup:
            return False  # this process is the writer: nothing deletes behind its back
        step_dir = epath.Path(self.directory) / str(step)
        waits = _DELETION_WAITS if self._lock_file().exists() else 0
        for _ in range(waits):
            if not step_dir.exists():
                break
            time.sleep(0.1)
        return not step_dir.exists() or step not in self._listed()

    def _saved_tree(self, step: int):
        """The saved tree of metadata (shapes, dtypes), or `CheckpointDamaged`."""
        step_dir = epath.Path(self.directory) / str(step)
        if not (step_dir / "_CHECKPOINT_METADATA").exists():
            raise _damaged(step, f"incomplete (no _CHECKPOINT_METADATA in {step_dir})")
        try:
            metadata = self.manager.item_metadata(step)
        except Exception as e:  # orbax raises what its readers raise
            raise _damaged(step, f"unreadable ({_short(e)})") from None
        tree = getattr(metadata, "tree", metadata)
        if not tree:
            raise _damaged(step, f"incomplete (no saved arrays in {step_dir})")
        return tree

    def _restore_step(self, step: int, state_template):
        saved = self._saved_tree(step)
        if state_template is None:  # as saved, on the host
            restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), saved)
            args = ocp.args.PyTreeRestore(restore_args=restore_args)
        else:
            abstract = jax.tree.map(
                lambda x: (
                    jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
                    if hasattr(x, "sharding")
                    else x
                ),
                state_template,
            )
            self._check_fits(step, saved, abstract)
            restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
            args = ocp.args.PyTreeRestore(abstract, restore_args=restore_args)
        try:
            restored = self.manager.restore(step, args=args)
        except Exception as e:  # tensorstore raises bare Exceptions for bad files
            _ignore_abandoned_io()
            raise _damaged(step, f"unreadable ({_short(e)})") from None
        self._verify(step, saved, restored)
        return restored

    def _check_fits(self, step: int, saved, abstract) -> None:
        """Names and shapes of the saved arrays against the template's, before any read (a
        refused restore then leaves no reads in flight to complain after the error)."""
        have = {n: tuple(getattr(m, "shape", ())) for n, m in named_leaves(saved).items()}
        want = {n: tuple(getattr(x, "shape", ())) for n, x in named_leaves(abstract).items()}
        if have == want:
            return
        both = [n for n in want if n in have and have[n] != want[n]]  # params first
        problems = [f"{n} is {have[n]} there, {want[n]} here" for n in both]
        for names, where in (
            (want.keys() - have.keys(), "checkpoint"),
            (have.keys() - want.keys(), "model"),
        ):
            if names:
                listed = ", ".join(sorted(names)[:3])
                problems.append(f"{len(names)} arrays not in the {where} ({listed})")
        raise CheckpointMismatch(
            f"Checkpoint {step} in {self.directory} does not fit this model/config (different "
            f"architecture, head size or optimizer?): {'; '.join(problems[:4])}."
        )

    def _verify(self, step: int, saved, restored) -> None:
        """Compares the restored arrays' fingerprints with those recorded at the save."""
        try:
            custom = self.manager.metadata(step).custom_metadata or {}
        except Exception as e:
            raise _damaged(step, f"unreadable ({_short(e)})") from None
        recorded = custom.get(_METADATA_KEY)
        if not recorded:
            if self.directory not in _unverified_warned:
                _unverified_warned.add(self.directory)
                logging.warning(
                    "Checkpoint %d in %s has no checksums (written before cnnx recorded "
                    "them): restored unverified.",
                    step,
                    self.directory,
                )
            return
        if recorded.get("algorithm") != ALGORITHM:
            raise _damaged(step, f"checksummed by an unknown method {recorded.get('algorithm')!r}")
        expected = recorded["arrays"]
        saved_dtypes = {n: getattr(m, "dtype", None) for n, m in named_leaves(saved).items()}
        leaves = {
            n: x
            for n, x in named_leaves(restored).items()
            if n in expected and np.dtype(x.dtype) == np.dtype(saved_dtypes.get(n) or x.dtype)
        }  # a leaf restored as another dtype has other bits: not comparable
        actual = fingerprints(leaves)
        bad = sorted(n for n in actual if actual[n] != expected[n])
        if bad:
            raise _damaged(
                step,
                f"corrupt: {len(bad)} of {len(expected)} arrays differ from their "
                f"checksums ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})",
            )

    def _set_aside(self, damaged: list[CheckpointDamaged], used: int) -> None:
        """Moves damaged steps out of orbax's way (a later save of the same step number
        would fail), keeping their files for inspection."""
        if jax.process_index() == 0:
            for error in damaged:
                source = epath.Path(self.directory) / str(error.step)
                target = epath.Path(self.directory) / f"{error.step}.damaged"
                n = 1
                while target.exists():
                    n += 1
                    target = epath.Path(self.directory) / f"{error.step}.damaged{n}"
                source.rename(target)
                logging.warning(
                    "Checkpoint %s; moved it to %s and resuming from step %d, the newest "
                    "intact checkpoint.",
                    error,
                    target,
                    used,
                )
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("cnnx_checkpoint_set_aside")
        self.manager.reload()

    def _damaged_error(self, damaged, state_template, steps) -> CheckpointDamaged:
        """The error for damaged steps, naming the intact ones (each restored and checked)."""
        named = {e.step for e in damaged}
        intact = []
        for other in steps:
            if other in named:
                continue
            try:
                self._restore_step(other, state_template)
                intact.append(other)
            except CheckpointDamaged as e:
                if not self._vanished(other):
                    damaged.append(e)
        what = "; ".join(f"checkpoint {e}" for e in damaged)
        if intact:
            todo = (
                f"The intact steps are {_steps_text(intact)}: ask for one of them (eval.py "
                f"--step={intact[0]}, --config.init.step={intact[0]})."
            )
            if self._cleanup:
                todo = f"The intact steps are {_steps_text(intact)}."
        elif not self._cleanup and self._lock_file().exists():
            todo = (
                f"Nothing was changed, and nothing should be moved while {self._writer()} "
                "may be writing or deleting steps: read again once it has saved a step."
            )
        else:
            todo = (
                "No intact step is left. Nothing was changed; move the damaged steps aside "
                f"(mv {self.directory}/STEP {self.directory}/STEP.damaged) to start afresh, "
                "or use another --workdir."
            )
        return CheckpointDamaged(f"In {self.directory}: {what}. {todo}")

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


def locate_checkpoints(path: str) -> str:
    """The checkpoints directory from a workdir or from that directory itself: `path`'s
    `checkpoints/` when it has one, else `path` (a guess, for `load_variables`' callers)."""
    inside = epath.Path(workdir_layout.checkpoints_dir(path))
    return str(inside) if inside.is_dir() else path


def load_variables(path: str, step: int | None = None, ema: bool = False) -> dict:
    """Model variables from a checkpoint without rebuilding the training state.

    Args:
      path: a workdir (with checkpoints/ inside) or the checkpoints directory itself.
      step: checkpoint step (default: newest).
      ema: return the EMA weights instead of the raw ones.

    Returns:
      `{'params': ..., 'batch_stats': ...}` as numpy arrays on the host.

    Raises:
      CheckpointError: no checkpoint (or step) there, a damaged one (see
        `Checkpointer.restore`), or `ema` asked of a run that kept no EMA weights.
    """
    ckpt = Checkpointer(locate_checkpoints(path), read_only=True)
    try:
        raw = ckpt.restore(None, step)
    finally:
        ckpt.close()
    prefix = "ema_" if ema else ""
    if raw.get(f"{prefix}params") is None:
        kept = " (the run kept no EMA weights: train.ema_decay was not set)" if ema else ""
        raise CheckpointError(f"The checkpoint in {path} has no {prefix}params{kept}.")
    return {"params": raw[f"{prefix}params"], "batch_stats": raw.get(f"{prefix}batch_stats") or {}}


def load_params(path: str, step: int | None = None, ema: bool = False):
    """The parameters of a checkpoint (see `load_variables`)."""
    return load_variables(path, step, ema)["params"]
