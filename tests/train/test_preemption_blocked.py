"""SIGTERM to a run whose main thread is blocked in C (issue 33 item 1): Python runs signal
handlers only in the main thread between bytecodes, so the run used to neither save nor exit.
The watchdog (`cnnx.train.preemption`) exits with 143 after the grace, naming where the main
thread is blocked and the newest saved step; a save in flight stays a temporary folder that
the next run ignores and deletes, and the run resumes from the newest saved step."""

import os
import signal
import subprocess
import sys
import time

import pytest

from cnnx.errors import ConfigError
from cnnx.train import loop
from cnnx.train.preemption import GRACE_ENV, grace_seconds
from tests import jax_cache
from tests.jax_cache import compilation_cache  # noqa: F401
from tests.train.test_faults import CLI_OVERRIDES, _steps_on_disk
from tests.train.tiny import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The Preemption of a run, its main thread then blocked in C (or, with 'python', waiting in
# Python for the flag and taking longer than the grace to stop: no watchdog exit).
SCRIPT = """
import ctypes, sys, time
from cnnx.train.preemption import Preemption
with Preemption(sys.argv[1]) as preemption:
    print("ready", flush=True)
    if sys.argv[2] == "c":  # a mutex locked twice: blocked in C for good (signals or not)
        mutex = ctypes.create_string_buffer(64)
        ctypes.CDLL(None).pthread_mutex_lock(mutex)
        ctypes.CDLL(None).pthread_mutex_lock(mutex)
    while not preemption.requested:
        time.sleep(0.01)
    time.sleep(3)  # the stop point reached: a save may take longer than the grace
print("stopped in Python", flush=True)
"""


def _signalled(tmp_path, where: str):
    """(exit code, seconds from SIGTERM to exit, output) of SCRIPT blocked `where`."""
    ckpts = tmp_path / "checkpoints"
    for name in ("3", "7", "9.orbax-checkpoint-tmp-1765000000"):
        (ckpts / name).mkdir(parents=True)
    (tmp_path / "blocked.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": REPO, GRACE_ENV: "1", "JAX_PLATFORMS": "cpu"}
    p = subprocess.Popen(
        [sys.executable, str(tmp_path / "blocked.py"), str(ckpts), where],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert p.stdout.readline() == "ready\n"
    time.sleep(0.2)  # into the blocking call
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # no watchdog: blocked for good
        p.kill()
        raise
    return p.returncode, time.monotonic() - t0, out


def test_sigterm_with_the_main_thread_blocked_in_c_exits_143_after_the_grace(tmp_path):
    code, seconds, out = _signalled(tmp_path, "c")
    assert code == 143, out
    assert 1 <= seconds < 20, seconds  # the grace (1 s), then at once (a loaded host)
    assert f"did not reach its stop point within 1 s ({GRACE_ENV}=1)" in out
    assert "the newest saved checkpoint is step 7, where a restart resumes" in out
    assert 'blocked.py", line 9, in <module>' in out  # where the main thread is
    assert "pthread_mutex_lock(mutex)" in out  # its stack
    assert "stopped in Python" not in out


def test_a_run_that_reaches_its_stop_point_is_not_cut_short(tmp_path):
    code, _, out = _signalled(tmp_path, "python")
    assert code == 0 and "stopped in Python" in out, out
    assert "did not reach its stop point" not in out


@pytest.mark.parametrize(
    "value, seconds", [("", 30.0), ("2.5", 2.5), ("0", None), ("off", None), ("OFF", None)]
)
def test_the_grace_comes_from_the_environment(monkeypatch, value, seconds):
    monkeypatch.setenv(GRACE_ENV, value)
    assert grace_seconds() == seconds


@pytest.mark.parametrize("value", ["-1", "ten", "nan"])
def test_a_bad_grace_is_one_error(monkeypatch, value):
    monkeypatch.setenv(GRACE_ENV, value)
    with pytest.raises(ConfigError, match=f"{GRACE_ENV}={value!r}: give the seconds"):
        grace_seconds()


@pytest.mark.slow
def test_train_py_blocked_in_c_with_a_save_in_flight_exits_143_and_resumes(
    tmp_path,
    compilation_cache,  # noqa: F811
):
    wd, ckpts = tmp_path / "wd", tmp_path / "wd" / "checkpoints"
    env = {**os.environ, "PYTHONPATH": REPO, GRACE_ENV: "2", **jax_cache.env(compilation_cache)}
    args = [f"--config.{k}={v}" for k, v in CLI_OVERRIDES.items()]
    # Checkpoints every 4 steps: the save of 8 never commits; SIGTERM after step 9.
    worker = [sys.executable, "-m", "tests.train.blocked_worker", "8", "9"]
    p = subprocess.run(
        [*worker, "--config=tests/train/tiny.py", f"--workdir={wd}", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert p.returncode == 143, p.stdout[-3000:]
    assert "did not reach its stop point within 2 s" in p.stdout
    assert "the newest saved checkpoint is step 4, where a restart resumes" in p.stdout
    assert "blocked_worker.py" in p.stdout  # the main thread's stack names where it blocks
    assert _steps_on_disk(ckpts) == ([4], ["8.orbax-checkpoint-tmp"])

    ran = []
    config = tiny_config(**CLI_OVERRIDES)
    results = loop.train_and_evaluate(config, str(wd), step_callback=ran.append)
    assert results["status"] == "completed" and ran[0] == 5 and ran[-1] == 12
    assert _steps_on_disk(ckpts)[1] == []  # the save in flight: deleted, never restored
