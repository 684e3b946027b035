"""A run's speed against its chips: images/s per chip, achieved TFLOP/s, MFU and host share.

- FLOPs per step come from XLA's cost analysis of the compiled train step (the program one
  device runs, so per chip), taken once after the first step compiled (the compilation cache
  answers; nothing is compiled twice).
- images/s per chip and TFLOP/s per chip divide by `StepTimer`'s step time (evaluation,
  checkpoints and compilation excluded); MFU divides the TFLOP/s by the chip's dense peak for
  the compute dtype (`cnnx.backends.chips`; none on CPUs and unknown chips: not reported).
- host share: the fraction of the time between steps' completions in which the device had
  nothing queued, waiting for the host, and its parts by cause (`CAUSES`: input, metric
  fetches, logging, checkpoint handoff; 'other': dispatch and the loop's own Python), which
  add up to it. `DeviceIdle` measures it without synchronising the loop: a watcher thread
  waits for each step's output and compares its completion with the time the next step was
  handed over; the host's phases (`Throughput.phase`) that overlap that wait are its causes.
  Evaluation and compilation are not counted (they are not a step's waits: the device is
  busy with them, or nothing is queued by design).

Per the MaxText / big_vision convention, FLOPs are the compiled program's, so rematerialised
forward passes count (the chip does compute them); the README's GFLOP figures count the
model's 3x forward instead.
"""

import contextlib
import queue
import threading
import time

import jax
from absl import logging

from cnnx.backends import chips


def step_flops(compiled) -> float | None:
    """FLOPs of one execution of a compiled program on one device (XLA's cost analysis), or
    None where the backend gives none."""
    try:
        cost = compiled.cost_analysis()
    except Exception as e:  # backends without a cost model
        logging.info("no cost analysis of the train step: %s", e)
        return None
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def peak_memory_bytes(compiled, device) -> int | None:
    """The device's peak bytes in use so far (GPU/TPU allocators report it), else XLA's
    compiled estimate for the step (arguments + outputs + temporaries - aliased)."""
    stats = None
    with contextlib.suppress(Exception):
        stats = device.memory_stats()
    if stats and stats.get("peak_bytes_in_use"):
        return int(stats["peak_bytes_in_use"])
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


# The causes of the device's waits that the loop names (`Throughput.phase`); the rest of a
# wait is 'other'.
CAUSES = ("input", "metrics", "logging", "checkpoint")
OTHER = "other"


def _overlap(t0: float, t1: float, a: float, b: float) -> float:
    return max(0.0, min(t1, b) - max(t0, a))


class DeviceIdle:
    """How long the device waited for the host between steps, and why, with no sync in the
    loop.

    The loop reports each dispatched step (`dispatched`: one output of the step, the time its
    call returned, and the host's phases since the previous dispatch as (cause, start, end);
    cause None: not a step's, such as evaluation and compilation). A daemon thread waits for
    the outputs in order. The device waits before step i+1 from done(i) to handed over(i+1),
    less the phases that were not a step's; each cause's part is its phases' overlap with
    that wait, 'other' the rest. The span is done(i+1) - done(i), less the same.

    The thread only waits on arrays the loop already holds (`block_until_ready`): it never
    dispatches device work, so it cannot interleave programs with the loop's.
    """

    def __init__(self):
        self._queue = queue.Queue()
        self._lock = threading.Lock()
        self._parts = dict.fromkeys((*CAUSES, OTHER), 0.0)
        self._span = 0.0
        self._last_done = None
        self._thread = threading.Thread(target=self._watch, name="cnnx-device-idle", daemon=True)
        self._thread.start()

    def dispatched(self, output, handed_over: float, phases=()) -> None:
        """`phases`: [(cause or None, start s, end s)] of the host since the last dispatch
        (`time.perf_counter` times, as `handed_over`)."""
        self._queue.put((output, handed_over, tuple(phases)))

    def _count(self, handed_over: float, done: float, phases) -> None:
        last = self._last_done
        excluded = sum(_overlap(t0, t1, last, handed_over) for c, t0, t1 in phases if c is None)
        idle = max(0.0, handed_over - last - excluded)
        named = 0.0
        for cause, t0, t1 in phases:
            if cause is not None:
                part = _overlap(t0, t1, last, handed_over)
                self._parts[cause] += part
                named += part
        self._parts[OTHER] += max(0.0, idle - named)
        excluded = sum(_overlap(t0, t1, last, done) for c, t0, t1 in phases if c is None)
        self._span += max(0.0, done - last - excluded)

    def _watch(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                output, handed_over, phases = item
                with contextlib.suppress(Exception):  # a deleted or failed output: no figure
                    jax.block_until_ready(output)
                done = time.perf_counter()
                with self._lock:
                    if self._last_done is not None:
                        self._count(handed_over, done, phases)
                    self._last_done = done
            finally:
                self._queue.task_done()

    def take(self) -> tuple[dict, float]:
        """({cause: idle s} for `CAUSES` and 'other', span s) since the last call; waits for
        the steps reported so far (call it where the loop has fetched their outputs anyway)."""
        self._queue.join()
        with self._lock:
            taken = dict(self._parts), self._span
            self._parts, self._span = dict.fromkeys(self._parts, 0.0), 0.0
        return taken

    def close(self) -> None:
        """Ends the watcher thread (again: nothing)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)


class Throughput:
    """The speed figures of a run's log lines and results.json.

    Args:
      batch_size: the global batch.
      devices: the mesh's devices (chips: one JAX device per chip on the table's kinds).
      compute_dtype: the model's compute dtype name.
    """

    def __init__(self, batch_size: int, devices, compute_dtype: str):
        devices = list(devices)
        self.batch_size, self.chips, self.compute_dtype = batch_size, len(devices), compute_dtype
        self.device = devices[0]
        self.device_kind = self.device.device_kind
        self.peak_tflops = chips.peak_tflops(self.device_kind, compute_dtype)
        self.flops_per_step = None  # per chip, once the step has compiled
        self.compile_s = None
        self.peak_memory = None
        self._compiled = None
        self.idle = DeviceIdle()
        self._phases = []  # the host's phases since the last dispatch: (cause, start, end)
        self._in_phase = False
        self._total = {"steps": 0, "step_s": 0.0, "span_s": 0.0}
        self._total_parts = dict.fromkeys((*CAUSES, OTHER), 0.0)

    def compiled(self, compiled, compile_s: float) -> None:
        """Records the compiled step: its FLOPs per chip and compile time."""
        self._compiled, self.compile_s = compiled, compile_s
        self.flops_per_step = step_flops(compiled)

    @contextlib.contextmanager
    def phase(self, cause: str | None):
        """Host work of one cause (`CAUSES`; None: not a step's, such as evaluation and
        compilation, out of the host share). A phase inside another counts as the outer one.

        Raises:
          ValueError: an unknown cause.
        """
        if cause is not None and cause not in CAUSES:
            raise ValueError(f"unknown host-share cause {cause!r}; one of {CAUSES} or None")
        if self._in_phase:
            yield
            return
        self._in_phase, t = True, time.perf_counter()
        try:
            yield
        finally:
            self._phases.append((cause, t, time.perf_counter()))
            self._in_phase = False

    def not_a_step(self):
        """Host time that is not a step's (evaluation, compilation): out of the host share."""
        return self.phase(None)

    def dispatched(self, output) -> None:
        """Call right after a step's call returned, with one of its (non-donated) outputs."""
        self.idle.dispatched(output, time.perf_counter(), self._phases)
        self._phases = []

    def _figures(self, steps: int, step_s: float, parts: dict, span_s: float) -> dict:
        per_step = step_s / steps if steps else 0.0
        share = {k: v / span_s if span_s > 0 else 0.0 for k, v in parts.items()}
        out = {
            "images_per_s_per_chip": self.batch_size / per_step / self.chips if per_step else 0.0,
            "host_share": sum(share.values()),
            **{f"host_share/{k}": v for k, v in share.items()},
        }
        if self.flops_per_step and per_step:
            out["tflops_per_chip"] = self.flops_per_step / per_step / 1e12
            share = chips.mfu(self.flops_per_step, per_step, self.peak_tflops)
            if share is not None:
                out["mfu"] = share
        return out

    def interval(self, steps: int, step_ms: float) -> dict:
        """The figures of the steps since the last call (`steps` of `step_ms` each)."""
        parts, span_s = self.idle.take()
        step_s = steps * step_ms / 1000.0
        for key, value in zip(("steps", "step_s", "span_s"), (steps, step_s, span_s)):
            self._total[key] += value
        for key, value in parts.items():
            self._total_parts[key] += value
        return self._figures(steps, step_s, parts, span_s)

    def results(self) -> dict:
        """The run segment's figures for results.json (over every logged step)."""
        t = self._total
        if self._compiled is not None:
            self.peak_memory = peak_memory_bytes(self._compiled, self.device)
        return {
            "compute_dtype": self.compute_dtype,
            "device_kind": self.device_kind,
            "chips": self.chips,
            "peak_tflops_per_chip": self.peak_tflops,
            "gflop_per_step_per_chip": (self.flops_per_step or 0.0) / 1e9 or None,
            "compile_s": self.compile_s,
            "peak_memory_mb": None if self.peak_memory is None else self.peak_memory / 2**20,
            "mfu": None,
            "tflops_per_chip": None,
            **self._figures(t["steps"], t["step_s"], self._total_parts, t["span_s"]),
        }

    def close(self) -> None:
        self.idle.close()
