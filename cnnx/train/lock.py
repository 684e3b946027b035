"""The workdir's lock: one writer per workdir (`locked`, `WorkdirLock`, `live_holder`).

The lock file (`workdir.lock_path`) records host, boot, pid and start time. A lock whose
holder is on this host and no longer running is stale and taken over with a warning; a live
holder, or one on another host, is an error naming it. Locally the lock is created atomically
(`os.link` of a complete file); on gs:// it is written, then read back.
"""

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

from absl import logging
from etils import epath

from cnnx.errors import WorkdirError
from cnnx.train.workdir import describe_write_error, is_remote, lock_path, read_json


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


_HELD: set[str] = set()  # lock files held by this process


class WorkdirLock:
    """The workdir's exclusive lock, held by one training process (process 0 of a run).

    The lock file records host, boot, pid and start time. A lock whose holder is on this host
    and no longer running (its pid is gone, or the machine rebooted since) is stale: taken
    over with a warning. A lock of a live process, or of another host (whose processes
    cannot be checked from here), is an error naming the holder.

    Locally the lock is created atomically (`os.link` of a complete file: it exists whole or
    not at all). On gs:// there is no atomic create: the lock is written, then read back,
    which catches all but near-simultaneous starts; and a lock left by a killed run on another
    host must be deleted by hand (the error says which file).
    """

    def __init__(self, workdir: str):
        self.path = lock_path(workdir)
        self._mine: dict | None = None

    def _me(self) -> dict:
        return {
            "host": socket.gethostname(),
            "boot_id": _boot_id(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv),
        }

    def _create(self, me: dict) -> bool:
        text = json.dumps(me, sort_keys=True)
        if is_remote(self.path):
            p = epath.Path(self.path)
            if p.exists():
                return False
            p.write_text(text)
            return read_json(self.path) == me
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return False
        if holder.get("boot_id") and holder.get("boot_id") != _boot_id():
            return True  # this machine restarted since
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return False
        if pid == os.getpid():
            return self.path not in _HELD  # a former process that had our pid (containers)
        return not _alive(pid)

    def acquire(self) -> None:
        """Takes the lock.

        Raises:
          WorkdirError: another live process (or another host) holds it.
        """
        me = self._me()
        for _ in range(3):
            if self._create(me):
                self._mine = me
                _HELD.add(self.path)
                return
            holder = read_json(self.path)
            if holder is None and not epath.Path(self.path).exists():
                continue  # released meanwhile
            if holder is None or not self._stale(holder):
                raise WorkdirError(self._held_by(holder))
            logging.warning(
                "Taking over the stale lock %s of pid %s on %s (started %s), which is no "
                "longer running.",
                self.path,
                holder.get("pid"),
                holder.get("host"),
                holder.get("started"),
            )
            epath.Path(self.path).unlink(missing_ok=True)
        raise WorkdirError(self._held_by(read_json(self.path)))

    def _held_by(self, holder: dict | None) -> str:
        if holder is None:
            who = "an unreadable lock"
        else:
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} (started "
                f"{holder.get('started')}: {holder.get('command', '?')})"
            )
        return (
            f"{os.path.dirname(self.path)} is in use by {who}. One run writes a workdir at a "
            "time: wait for it, stop it, or use another --workdir. If that process is gone "
            f"(e.g. on another machine), delete {self.path}."
        )

    def release(self) -> None:
        """Drops the lock if this process holds it (and it is still ours)."""
        if self._mine is None:
            return
        _HELD.discard(self.path)
        try:
            if read_json(self.path) == self._mine:
                epath.Path(self.path).unlink(missing_ok=True)
        finally:
            self._mine = None


def live_holder(workdir: str) -> dict | None:
    """The holder of the workdir's lock while it may still be running (a live process on this
    host, or any process on another host), else None (no lock, a stale or unreadable one)."""
    holder = read_json(lock_path(workdir))
    if holder is None or WorkdirLock(workdir)._stale(holder):
        return None
    return holder


def _cannot_write(workdir: str, error: Exception) -> WorkdirError:
    """The one line for a workdir whose lock cannot be written (the run's first write)."""
    reason, full = describe_write_error(error)
    hint = (
        "free disk space (or raise the quota)"
        if full
        else "pass a --workdir this process can write (not a read-only file system; on gs://, "
        "a bucket that exists and that these credentials may write: gcloud auth "
        "application-default login, or GOOGLE_APPLICATION_CREDENTIALS)"
    )
    return WorkdirError(f"Cannot write the lock of {workdir} ({reason}): {hint}.")


@contextlib.contextmanager
def locked(workdir: str, *, take: bool = True, agree=None) -> Iterator[None]:
    """Holds the workdir's lock for the block.

    Args:
      workdir: the run's directory (created if absent by the process that takes the lock).
      take: whether this process takes the lock (process 0 of a run); others pass False.
      agree: for several processes, `fn(ok: bool) -> bool` returning process 0's outcome to
        every process (a broadcast), so that all stop when process 0 could not lock instead
        of waiting for it in a collective.

    Raises:
      WorkdirError: the workdir is in use, or cannot be written (read-only, a full disk, a
        missing bucket); on every process when `agree` is given.
    """
    lock, error = None, None
    if take:
        lock = WorkdirLock(workdir)
        try:
            epath.Path(workdir).mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except WorkdirError as e:
            lock, error = None, e
        except Exception as e:  # OSError; gs:// clients raise their own types
            if not (isinstance(e, OSError) or is_remote(workdir)):
                raise
            lock, error = None, _cannot_write(workdir, e)
    if agree is not None and not agree(error is None):
        raise error or WorkdirError(
            f"{workdir} is in use: process 0 of this run could not take its lock (its log "
            "names the holder). Use another --workdir, or stop the run that holds it."
        )
    if error is not None:
        raise error
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
