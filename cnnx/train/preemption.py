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
"""

import signal

import jax
import numpy as np
from absl import logging


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
        the processes agreed to stop (JAX's service).
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        self._depth = 0
        self._native = False  # JAX's preemption service takes the notice

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

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        self._depth -= 1
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

            flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
            return bool(np.any(flags))
        return self.requested
