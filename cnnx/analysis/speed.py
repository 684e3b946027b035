"""Throughput: images/s of inference and of a training step on the default JAX device.

Each step is compiled first (compile time reported apart), run `warmup` times, then timed
`repeats` times with `block_until_ready`; the median time gives images/s = batch / median.
"""

import dataclasses
import statistics
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnx.analysis import steps


@dataclasses.dataclass(frozen=True)
class Speed:
    """Measured throughput of one model at one batch size and resolution."""

    batch: int
    resolution: int
    inference_ips: float
    train_ips: float
    inference_compile_s: float
    train_compile_s: float
    device: str


def time_interleaved(runs: dict, warmup: int, repeats: int) -> dict:
    """Seconds of each timed call of several zero-argument runs, taken in alternation.

    Round r calls every run once, in an order rotated by r (A B, then B A, ...), so that a
    shared host's speed, which drifts over minutes, weighs on all runs alike and each round's
    times form a pair. Each run is first called `warmup` times.

    Returns:
      {name: [seconds of round 0, round 1, ...]} (each call waited for, `block_until_ready`).
    """
    names = list(runs)
    for name in names:
        for _ in range(warmup):
            jax.block_until_ready(runs[name]())
    times = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t = time.perf_counter()
            jax.block_until_ready(runs[name]())
            times[name].append(time.perf_counter() - t)
    return times


def time_runs(fn, args, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls `fn(*args)` (until ready), after `warmup` calls."""
    return time_interleaved({"run": lambda: fn(*args)}, warmup, repeats)["run"]


def _time(compiled, args, warmup: int, repeats: int) -> float:
    return statistics.median(time_runs(compiled, args, warmup, repeats))


def throughput(
    model,
    input_shape: Sequence[int],
    num_classes: int = 1000,
    warmup: int = 2,
    repeats: int = 10,
    seed: int = 0,
) -> Speed:
    """Measures inference and train-step images/s (median of `repeats` after `warmup`).

    Args:
      model: a Flax module.
      input_shape: (batch, height, width, channels).
      num_classes: label range of the training loss.
      warmup: untimed runs after compilation.
      repeats: timed runs.
      seed: seed of the random initialisation and inputs.

    Returns:
      A `Speed`.
    """
    batch = int(input_shape[0])
    key = jax.random.PRNGKey(seed)
    rng = np.random.default_rng(seed)
    # Host-side random values of the right shapes: timing does not depend on the values, and
    # compiling the model's initialiser can cost more than the benchmark itself.
    shapes = steps.abstract_variables(model, input_shape)
    variables = jax.tree.map(
        lambda s: jnp.asarray((rng.standard_normal(s.shape) * 0.02).astype(s.dtype)), shapes
    )
    x = jnp.asarray(rng.standard_normal(tuple(input_shape)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, max(num_classes, 1), (batch,)).astype(np.int32))
    results = {}
    for kind, fn, args in (
        ("inference", steps.inference_fn(model), (variables, x)),
        ("train", steps.train_step_fn(model), (variables, x, labels, key)),
    ):
        t = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        compile_s = time.perf_counter() - t
        results[kind] = (batch / _time(compiled, args, warmup, repeats), compile_s)
    return Speed(
        batch=batch,
        resolution=int(input_shape[1]),
        inference_ips=results["inference"][0],
        train_ips=results["train"][0],
        inference_compile_s=results["inference"][1],
        train_compile_s=results["train"][1],
        device=str(jax.devices()[0].device_kind),
    )


def throughput_registered(name: str, resolution: int | None = None, batch: int = 32, **kw):
    """`throughput` of a registered model at `resolution` (default: the spec's)."""
    from cnnx import models

    spec = models.get_spec(name)
    r = resolution or spec.resolution
    return throughput(models.create(name), (batch, r, r, spec.in_chans), spec.num_classes, **kw)
