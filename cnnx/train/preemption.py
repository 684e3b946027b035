"""SIGTERM as a preemption notice: the step at which every process of a run stops and saves.

One process: a Python SIGTERM handler sets a flag that the loop checks between steps (so a
save is never torn).

Several processes (`jax.distributed`): the processes must stop at the *same* step, or the
first to stop enters the checkpoint's collectives while the others run the next step's
(a mismatch: abort or hang, and the checkpoint of the stop step lost). `scripts/tpu/stop.sh`
signals the workers one after the other, so they get SIGTERM at different steps. The agreement
is JAX's preemption service: `jax.distributed.initialize` installs a native SIGTERM notifier
that, on any process, starts a protocol in the background which picks max(step of every
process) + 1; `multihost_utils.reached_preemption_sync_point(step)`, called at every step, is
True on every process at that step. A Python SIGTERM handler would replace the native one (the
notice would never reach the service), so none is installed then. The native notifier runs on
its own thread: a main thread blocked in a device transfer or a compilation does not delay the
notice to the other processes.

With the service turned off (`JAX_ENABLE_PREEMPTION_SERVICE=false`), the processes agree
through an all-gather of each process's flag at every step instead, which waits for the step's
results (slower; a warning says so).

A main thread blocked in C (a device transfer, a long `block_until_ready`, a hung collective
or file system) never returns to the interpreter, so the Python handler's flag is never read
and the run would neither save nor exit. Where the Python handler is installed (one process,
or the all-gather fallback), `_Watchdog` learns of the signal on its own thread (through
`signal.set_wakeup_fd`, written by the C-level handler at once): if the loop has not reached
its stop point within `CNNX_SIGTERM_GRACE_S` seconds (default 30, as most schedulers allow
before SIGKILL; 0 or `off`: no watchdog), it logs one error line (where the main thread is
blocked, the newest saved checkpoint step) and the main thread's stack, and exits with 143
at once (`os._exit`: a save in flight stays an `*.orbax-checkpoint-tmp` folder, which restore
ignores and the next run deletes; the run resumes from the newest saved step). The loop's
save after the stop point is not timed: a save may legitimately take minutes.
"""

import contextlib
import os
import signal
import socket
import sys
import threading
import traceback

import jax
import numpy as np
from absl import logging
from etils import epath

from cnnx.errors import ConfigError

GRACE_ENV = "CNNX_SIGTERM_GRACE_S"
DEFAULT_GRACE_S = 30.0


def grace_seconds() -> float | None:
    """`CNNX_SIGTERM_GRACE_S`: seconds the loop has to reach its stop point after SIGTERM
    (default 30); None when set to 0 or 'off' (no watchdog).

    Raises:
      ConfigError: the value is not a number of seconds >= 0 or 'off'.
    """
    text = os.environ.get(GRACE_ENV, "").strip()
    if not text:
        return DEFAULT_GRACE_S
    if text.lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN too
        raise ConfigError(
            f"{GRACE_ENV}={text!r}: give the seconds a run has to stop after SIGTERM (e.g. 30), "
            "or 'off'."
        )
    return value or None


def saved_steps(checkpoints_dir: str | None) -> list[int]:
    """The checkpoint steps whose save finished (a folder named by the step; a save in flight
    is still `<step>.orbax-checkpoint-tmp...`), oldest first."""
    if not checkpoints_dir:
        return []
    try:
        names = [p.name for p in epath.Path(checkpoints_dir).iterdir()]
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


class _Watchdog:
    """Exits with 143 when the loop has not reached its stop point `grace_s` seconds after a
    SIGTERM (see the module docstring). Started in the main thread; `close` restores the
    previous wakeup fd."""

    def __init__(self, grace_s: float, checkpoints_dir: str | None):
        self.grace_s, self.checkpoints_dir = grace_s, checkpoints_dir
        self.stopping = threading.Event()  # the loop reached its stop point, or the run ended
        self._read, write = socket.socketpair()
        write.setblocking(False)
        self._write = write
        self._previous_fd = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="cnnx-sigterm-watchdog")
        self._thread.daemon = True
        self._thread.start()

    def _watch(self) -> None:
        while True:
            try:
                data = self._read.recv(64)
            except OSError:
                return
            if not data:  # closed
                return
            if signal.SIGTERM in data:
                break
        if self.stopping.wait(self.grace_s):
            return
        main = sys._current_frames().get(threading.main_thread().ident)
        stack = traceback.format_stack(main) if main is not None else []
        where = stack[-1].strip().splitlines()[0] if stack else "an unknown place"
        steps = saved_steps(self.checkpoints_dir)
        saved = (
            f"the newest saved checkpoint is step {steps[-1]}, where a restart resumes"
            if steps
            else "no checkpoint was saved yet: a restart begins again"
        )
        logging.error(
            "SIGTERM: the run did not reach its stop point within %g s (%s=%s): the main thread "
            "is blocked outside Python (a device transfer, a collective, I/O, a compilation) "
            "at %s. Exiting with 143 without a save; %s.",
            self.grace_s,
            GRACE_ENV,
            os.environ.get(GRACE_ENV, f"{DEFAULT_GRACE_S:g} by default"),
            where,
            saved,
        )
        logging.error("The main thread's stack:\n%s", "".join(stack).rstrip())
        logging.flush()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed or broken stream: exiting anyway
                stream.flush()
        os._exit(143)

    def close(self) -> None:
        self.stopping.set()
        with contextlib.suppress(ValueError):  # not the main thread: the process is ending
            signal.set_wakeup_fd(self._previous_fd)
        self._write.close()
        self._read.shutdown(socket.SHUT_RDWR)
        self._read.close()


def _sync_manager():
    """JAX's preemption sync manager, or None (one process, or the service turned off)."""
    from jax._src import distributed

    return distributed.global_state.preemption_sync_manager


class Preemption:
    """SIGTERM → the step to stop at, the same on every process.

    A context manager: installed for the whole run, from before the first step until the final
    evaluation, the final save and results.json are done; entering it again (nested) keeps
    the one handler.

    Attributes:
      requested: a SIGTERM reached this process (one process or the all-gather fallback), or
        the processes agreed to stop (JAX's service). Reading it True tells the watchdog that
        the run is stopping (the loop, or an evaluation that it abandons).
    """

    def __init__(self, checkpoints_dir: str | None = None):
        """`checkpoints_dir`: where the run's steps are saved, named by the watchdog."""
        self._requested = False
        self._previous = None
        self._depth = 0
        self._native = False  # JAX's preemption service takes the notice
        self._checkpoints_dir = checkpoints_dir
        self._watchdog: _Watchdog | None = None

    def __enter__(self):
        self._depth += 1
        if self._depth > 1:
            return self
        self._native = jax.process_count() > 1 and _sync_manager() is not None
        if self._native:
            return self  # keep the native SIGTERM notifier of jax.distributed
        if jax.process_count() > 1:
            logging.warning(
                "JAX's preemption service is off: the processes agree on a SIGTERM through an "
                "all-gather at every step, which waits for each step to finish. Leave "
                "jax_enable_preemption_service on (the default) for full speed."
            )
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: rely on the caller
            self._previous = None
            return self
        grace = grace_seconds()
        if grace is not None:
            self._watchdog = _Watchdog(grace, self._checkpoints_dir)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self._requested = True

    @property
    def requested(self) -> bool:
        if self._requested and self._watchdog is not None:
            self._watchdog.stopping.set()  # the main thread saw it: the run is stopping
        return self._requested

    @requested.setter
    def requested(self, value: bool) -> None:
        self._requested = value

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0 and self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        if self._depth == 0 and self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def should_stop(self, step: int) -> bool:
        """Whether to save `step` and stop; every process gets the same answer at the same step.

        Must be called at every step by every process (the service counts the calls).
        """
        if self._native:
            from jax.experimental import multihost_utils

            if multihost_utils.reached_preemption_sync_point(step):
                self.requested = True
            return self.requested
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            flags = multihost_utils.process_allgather(np.asarray(self._requested, np.int32))
            stop = bool(np.any(flags))
            if stop and self._watchdog is not None:
                self._watchdog.stopping.set()
            return stop
        return self.requested
