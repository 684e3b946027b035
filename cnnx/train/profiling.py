"""Where training time goes: a per-step data-wait / compute split, and jax.profiler traces.

`StepTimer` adds no device synchronisation. Steps are dispatched asynchronously, so timing
each one would mean waiting for the device after every step; instead the host adds up the time
it spends blocked on the input pipeline (`next(batches)`), and at each log step, where the
loop fetches the metrics and so waits for the device anyway, the interval's wall time is
divided over its steps:

- `train/step_ms`: wall time per step (evaluation, checkpointing and the first step's
  compilation excluded);
- `train/data_wait_ms`: of which the host was waiting for the next batch. Near zero means the
  input pipeline keeps up; close to step_ms means training is input bound;
- `train/compute_ms`: the rest: dispatch plus device time not hidden behind input.

`Profiler` records a TensorBoard trace (`jax.profiler`) of the steps chosen by
`--config.train.profile_steps=FIRST,COUNT`: the COUNT steps after the first FIRST steps of
the run (FIRST >= 1 keeps compilation out of the trace). View it with
`tensorboard --logdir=<workdir>/profile` (profile tab; needs the tensorboard-plugin-profile
package) or upload the `.xplane.pb` file to xprof / Perfetto.
"""

import contextlib
import os
import shutil
import tempfile
import time

import jax
from absl import logging
from etils import epath

from cnnx.train.workdir import is_remote


class StepTimer:
    """Accumulates data-wait and excluded time between two `summary()` calls."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._start = time.perf_counter()
        self._wait = 0.0
        self._excluded = 0.0
        self._steps = 0

    @contextlib.contextmanager
    def _adding_to(self, attribute: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, attribute, getattr(self, attribute) + time.perf_counter() - t)

    def waiting_for_data(self):
        """Time the host spends blocked on the input pipeline."""
        return self._adding_to("_wait")

    def excluded(self):
        """Time that is not a training step's (evaluation, checkpoints, compilation)."""
        return self._adding_to("_excluded")

    def step(self) -> None:
        self._steps += 1

    def summary(self) -> dict[str, float]:
        """Per-step milliseconds since the last summary (call after the device caught up)."""
        n = max(self._steps, 1)
        wall = max(time.perf_counter() - self._start - self._excluded, 0.0)
        wait = min(self._wait, wall)
        self.reset()
        return {
            "step_ms": 1000.0 * wall / n,
            "data_wait_ms": 1000.0 * wait / n,
            "compute_ms": 1000.0 * (wall - wait) / n,
        }


class Profiler:
    """Starts and stops a jax.profiler trace around the configured steps.

    Args:
      profile_steps: (first, count) or None: trace the `count` steps that follow the first
        `first` completed steps of the run.
      directory: where the trace goes (TensorBoard layout: plugins/profile/<run>/*.xplane.pb).
      start_step: the step the run starts (or resumes) at.
    """

    def __init__(self, profile_steps, directory: str, start_step: int):
        self.directory = directory
        # jax.profiler writes through XLA's own file system layer, which does not reach gs://
        # the way the path layer does: a gs:// trace is written locally, then copied over.
        self._local = None
        self.first, self.count = profile_steps if profile_steps else (None, 0)
        self.active = False
        if self.first is not None and start_step > self.first:
            logging.warning(
                "profile_steps=%s: the run resumes at step %d, after the first profiled step; "
                "not tracing.",
                tuple(profile_steps),
                start_step,
            )
            self.first = None

    def before_step(self, step: int) -> None:
        """`step`: steps completed so far."""
        if self.first is not None and step == self.first and not self.active:
            if is_remote(self.directory):
                self._local = tempfile.mkdtemp(prefix="cnnx_profile_")
            jax.profiler.start_trace(self._local or self.directory)
            self.active = True
            logging.info(
                "Profiling steps %d-%d into %s", step + 1, step + self.count, self.directory
            )

    def annotation(self, step: int):
        """Marks a step in the trace (TensorBoard's step-time view)."""
        if self.active:
            return jax.profiler.StepTraceAnnotation("train", step_num=step)
        return contextlib.nullcontext()

    def after_step(self, step: int, outputs) -> None:
        if self.active and step >= self.first + self.count:
            self.stop(outputs)

    def stop(self, outputs=None) -> None:
        if not self.active:
            return
        if outputs is not None:
            jax.block_until_ready(outputs)  # the traced steps' device work is in the trace
        jax.profiler.stop_trace()
        if self._local is not None:
            _copy_tree(self._local, self.directory)
            shutil.rmtree(self._local, ignore_errors=True)
            self._local = None
        self.active = False
        self.first = None
        logging.info("Profile written to %s", os.path.join(self.directory, "plugins", "profile"))


def _copy_tree(local: str, remote: str) -> None:
    """Copies the files under a local folder into a (gs://) folder, keeping their layout."""
    for root, _, files in os.walk(local):
        for name in files:
            source = os.path.join(root, name)
            target = epath.Path(remote) / os.path.relpath(source, local)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb") as f:
                target.write_bytes(f.read())
