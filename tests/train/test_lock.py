"""The workdir's lock (cnnx.train.lock): one writer, stale locks taken over, other hosts'
and unreadable locks refused, every process of a run stopping together."""

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from cnnx.errors import WorkdirError
from cnnx.train import lock


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_is_exclusive_and_released(tmp_path):
    first = lock.WorkdirLock(str(tmp_path))
    first.acquire()
    holder = json.loads((tmp_path / "lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(WorkdirError) as e:
        lock.WorkdirLock(str(tmp_path)).acquire()
    assert f"in use by pid {os.getpid()} on {socket.gethostname()}" in str(e.value)
    assert "another --workdir" in str(e.value)
    first.release()
    assert not (tmp_path / "lock").exists()
    with lock.locked(str(tmp_path)):  # free again
        assert (tmp_path / "lock").exists()
    assert not (tmp_path / "lock").exists()


def test_lock_of_a_live_process_refuses(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {
            "host": socket.gethostname(),
            "boot_id": lock._boot_id(),
            "pid": sleeper.pid,
            "started": "2026-01-01T00:00:00Z",
            "command": "train.py --workdir=x",
        }
        (tmp_path / "lock").write_text(json.dumps(holder))
        with pytest.raises(WorkdirError, match=f"pid {sleeper.pid} .*train.py --workdir=x"):
            lock.WorkdirLock(str(tmp_path)).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_locks_are_taken_over_with_a_warning(tmp_path, caplog):
    host, boot = socket.gethostname(), lock._boot_id()
    stale = {
        "dead pid": {"host": host, "boot_id": boot, "pid": _dead_pid()},
        "rebooted since": {"host": host, "boot_id": "another-boot", "pid": 1},
        # A container restarted under the same name gets the same pid: not a live holder.
        "our pid, not held": {"host": host, "boot_id": boot, "pid": os.getpid()},
    }
    caplog.set_level(logging.WARNING)
    for name, holder in stale.items():
        (tmp_path / "lock").write_text(json.dumps(holder))
        with lock.locked(str(tmp_path)):
            assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid(), name
        assert any("stale lock" in r.getMessage() for r in caplog.records), name
        caplog.clear()


def test_lock_of_another_host_or_unreadable_refuses(tmp_path):
    (tmp_path / "lock").write_text(json.dumps({"host": "elsewhere", "pid": 12}))
    with pytest.raises(WorkdirError, match=r"pid 12 on elsewhere.*delete .*lock"):
        lock.WorkdirLock(str(tmp_path)).acquire()
    (tmp_path / "lock").write_text("")
    with pytest.raises(WorkdirError, match=r"unreadable lock"):
        lock.WorkdirLock(str(tmp_path)).acquire()
    assert (tmp_path / "lock").read_text() == ""  # another's lock is never removed


def test_every_process_stops_when_process_0_cannot_lock(tmp_path):
    """Multi-host: only process 0 takes the lock; `agree` (a broadcast) tells the others."""
    (tmp_path / "lock").write_text(json.dumps({"host": "elsewhere", "pid": 12}))
    outcome = []

    def broadcast(ok):  # process 0's value reaches every process
        outcome.append(ok)
        return outcome[0]

    process_0 = lock.locked(str(tmp_path), take=True, agree=broadcast)
    with pytest.raises(WorkdirError, match="pid 12 on elsewhere"), process_0:
        pass
    process_1 = lock.locked(str(tmp_path), take=False, agree=broadcast)
    with pytest.raises(WorkdirError, match="process 0 of this run could not"), process_1:
        pass
    assert outcome == [False, True]
