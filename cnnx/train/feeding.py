"""Keeping the device fed: batches placed on the device ahead of their step, and a bound on
how far the host runs ahead of the device.

- `prefetch_to_device`: the next `size` batches are assembled into global arrays (their
  host-to-device copies started) while the device runs the current step, as
  `flax.jax_utils.prefetch_to_device` does for pmap; here for `NamedSharding`ed global arrays
  (`jax.make_array_from_process_local_data`), so one code path serves one chip and a pod.
- `InFlight`: the loop never waits for the step it has just dispatched (no per-step sync);
  it waits only when `depth` steps are still queued, for the oldest of them. The device keeps
  `depth - 1` steps queued behind the running one, while the host's run-ahead (the batches and
  outputs it holds) stays bounded. It also keeps XLA:CPU's multi-device collectives from
  deadlocking when dozens of steps and an evaluation are in flight at once (seen with 8
  host-platform devices on 2 cores).

The rules that keep XLA:CPU's collectives safe with many host-platform devices (its client
runs every device's share of a program on one pool of max(cores, devices) threads, so one
collective needs them all, and aborts the process when a collective's participants do not all
arrive within 40 s): only the loop's thread dispatches device work (the device-idle watcher
of `cnnx.train.throughput` only waits on arrays, and stops before the final evaluation); the
steps in flight are drained before every evaluation, periodic and final.
"""

import collections

import jax

from cnnx.data import to_global

# Batches placed ahead (flax's ImageNet example prefetches 2) and steps allowed in flight.
PREFETCH = 2
DEPTH = 3
# What the train step reads of a batch (`cnnx.train.steps.train_step`); the pipeline's other
# fields ('index', for linear probes) stay on the host: each placed array costs a transfer.
STEP_KEYS = ("image", "label")


def prefetch_to_device(batches, sharding, size: int = PREFETCH, keys=STEP_KEYS):
    """Yields global arrays of `batches`, the next `size` of them already placed.

    Args:
      batches: an iterator of per-process numpy batches ({'image', 'label', ...}).
      sharding: the batch sharding (`cnnx.parallel.mesh.batch_sharding`).
      size: batches placed ahead (0: place each when it is asked for).
      keys: the fields placed (None: all).

    Yields:
      dicts of `jax.Array`s sharded by `sharding`, in the iterator's order.
    """
    queue = collections.deque()
    for batch in batches:
        if keys is not None:
            batch = {k: batch[k] for k in keys}
        queue.append(to_global(batch, sharding))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


class InFlight:
    """Bounds the steps dispatched but not finished to `depth` (see the module docstring)."""

    def __init__(self, depth: int = DEPTH):
        self.depth = depth
        self._outputs = collections.deque()

    def add(self, output) -> None:
        """Records a dispatched step by one of its (non-donated) outputs; waits for the oldest
        step in flight when `depth` are."""
        self._outputs.append(output)
        while len(self._outputs) > self.depth:
            jax.block_until_ready(self._outputs.popleft())

    def drain(self) -> None:
        """Waits for every step in flight (before an evaluation or a checkpoint)."""
        while self._outputs:
            jax.block_until_ready(self._outputs.popleft())
