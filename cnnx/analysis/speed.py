"""Throughput: images/s of inference and of a training step on the default JAX device.

The training step is the trainer's own (`reference_steps.train_setup`: the config schema's
optimizer and step options, state donated). Each step is compiled first (compile time
reported apart), run `warmup` times, then timed `repeats` times with `block_until_ready`;
the median time gives images/s = batch / median.
"""

import dataclasses
import statistics
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnx.analysis import reference_steps


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
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(input_shape)).astype(np.float32)
    labels = rng.integers(0, max(num_classes, 1), (batch,)).astype(np.int32)

    # Host-side random values of the right shapes: timing does not depend on the values, and
    # compiling the model's initialiser can cost more than the benchmark itself.
    variables = _random_like(reference_steps.abstract_variables(model, input_shape), rng)
    infer = jax.jit(reference_steps.inference_fn(model))
    t = time.perf_counter()
    compiled = infer.lower(variables, x).compile()
    infer_compile = time.perf_counter() - t
    infer_s = _time(compiled, (variables, jnp.asarray(x)), warmup, repeats)

    setup = reference_steps.train_setup(model, input_shape, num_classes)
    holder = {
        "state": jax.device_put(_random_like(setup.abstract_state, rng), setup.state_shardings)
    }
    data = jax.device_put({"image": x, "label": labels}, setup.batch_sharding)
    key = jax.device_put(jax.random.PRNGKey(seed), setup.replicated)
    t = time.perf_counter()
    compiled = setup.step.lower(holder["state"], data, key).compile()
    train_compile = time.perf_counter() - t

    def train_once():  # the state is donated: each step consumes the previous one
        holder["state"], metrics = compiled(holder["state"], data, key)
        return metrics

    train_s = statistics.median(time_interleaved({"train": train_once}, warmup, repeats)["train"])
    return Speed(
        batch=batch,
        resolution=int(input_shape[1]),
        inference_ips=batch / infer_s,
        train_ips=batch / train_s,
        inference_compile_s=infer_compile,
        train_compile_s=train_compile,
        device=str(jax.devices()[0].device_kind),
    )


def _random_like(abstract, rng: np.random.Generator):
    """Arrays of the shapes and dtypes of `abstract`: small normal floats, integer zeros."""

    def leaf(s):
        if jnp.issubdtype(s.dtype, jnp.floating):
            return jnp.asarray((rng.standard_normal(s.shape) * 0.02).astype(s.dtype))
        return jnp.zeros(s.shape, s.dtype)

    return jax.tree.map(leaf, abstract)


def throughput_registered(name: str, resolution: int | None = None, batch: int = 32, **kw):
    """`throughput` of a registered model at `resolution` (default: the spec's)."""
    from cnnx import models

    spec = models.get_spec(name)
    r = resolution or spec.resolution
    return throughput(models.create(name), (batch, r, r, spec.in_chans), spec.num_classes, **kw)
