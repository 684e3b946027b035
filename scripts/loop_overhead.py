"""The training loop's step time against the bare jitted step (issue 26: within 5%).

  python scripts/loop_overhead.py --model resnet18 --batch_size 32 --image_size 64

Runs `train_and_evaluate` (input pipeline, metrics, logging, asynchronous checkpoints every
--ckpt_every steps; no periodic evaluation) on synthetic data for --steps steps, and then the
same jitted train step alone, on one device-resident batch, for as many steps. Prints per step:

  loop ms     wall time between the loop's step --warmup and its last step, per step
              (checkpoints and logging included; compilation and the final evaluation not)
  bare ms     the same step dispatched back to back on one batch, then waited for
  ratio       loop / bare: 1.00 means the loop costs nothing
  CPU ms      the process's CPU time per step over the same steps (every thread: XLA's,
              the input's, the loop's), and its ratio: what the loop adds in work, which a
              shared host does not move the way it moves wall time
  host share  the loop's own figure (`cnnx.train.throughput`): the device waiting on the host

--train_pp defaults to a pp string with a batched form (`cnnx.data.in_memory`: NumPy, a few
ms per batch); the configs' "inception_crop|flip|normalize" has none and runs tf.data one
example at a time, whose CPU time on a CPU host competes with XLA's for the same cores (on a
GPU or TPU it runs beside the device). A step under ~50 ms measures dispatch and Python more
than the loop's design; pick a model and batch above that. On a shared host the wall figures
move with the other load; the CPU figures much less.
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX starts

FLAGS = flags.FlagValues()
flags.DEFINE_string("model", "resnet18", "Registry name.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 32, "Global batch.", flag_values=FLAGS)
flags.DEFINE_integer("image_size", 64, "Synthetic images' side in pixels.", flag_values=FLAGS)
flags.DEFINE_integer("steps", 60, "Loop steps (and bare steps).", flag_values=FLAGS)
flags.DEFINE_integer("warmup", 5, "Loop steps before timing starts.", flag_values=FLAGS)
flags.DEFINE_integer("log_every", 10, "Log steps of the loop.", flag_values=FLAGS)
flags.DEFINE_integer("ckpt_every", 20, "Checkpoint steps of the loop.", flag_values=FLAGS)
flags.DEFINE_enum(
    "dtype", "auto", ("auto", "float32", "bfloat16"), "model.dtype.", flag_values=FLAGS
)
flags.DEFINE_string(
    "train_pp",
    "random_crop|flip|normalize",
    "The loop's train preprocessing (see the module docstring).",
    flag_values=FLAGS,
)
flags.DEFINE_string("output", None, "Write the figures to this JSON file.", flag_values=FLAGS)


def make_config(args):
    """A synthetic-data run of `args.model` with the loop's periodic work switched on."""
    from cnnx.config_schema import base_config

    c = base_config()
    c.model.name = args.model
    c.model.dtype = args.dtype
    c.data.source = "synthetic"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.num_classes = 10
    c.data.image_size = args.image_size
    c.data.cache = True
    c.data.train_pp = args.train_pp
    c.train.batch_size = args.batch_size
    c.eval.batch_size = args.batch_size
    c.train.num_steps = args.steps
    c.train.log_every_steps = args.log_every
    c.eval.every_steps = 10 * args.steps  # only the final evaluation (not timed)
    c.ckpt.every_steps = args.ckpt_every
    c.ckpt.asynchronous = True
    c.schedule.warmup_epochs = 0.0
    return c


def loop_ms(config, warmup: int) -> tuple[float, float, dict]:
    """(wall ms and process CPU ms per step of the loop from step `warmup` to the last, the
    run's results)."""
    from cnnx.train.loop import train_and_evaluate

    times = {}
    results = train_and_evaluate(
        config,
        tempfile.mkdtemp(prefix="cnnx_loop_overhead_"),
        step_callback=lambda step: times.__setitem__(
            step, (time.perf_counter(), time.process_time())
        ),
    )
    last, n = max(times), max(times) - warmup
    (w0, c0), (w1, c1) = times[warmup], times[last]
    return 1e3 * (w1 - w0) / n, 1e3 * (c1 - c0) / n, results


def bare_ms(config, steps: int) -> tuple[float, float]:
    """(wall ms, process CPU ms) per step of the trainer's jitted step alone, back to back on
    one placed batch."""
    import jax
    import numpy as np

    from cnnx.parallel.mesh import batch_sharding, replicated
    from cnnx.train import build
    from cnnx.train.experiment import setup

    exp = setup(config)
    schedule = build.make_schedule(config, 100, config.train.num_steps)
    state, shardings = build.init_state(exp, build.make_tx(config, schedule), jax.random.key(0))
    step = build.experiment_train_step(exp, schedule, shardings)
    b, (h, w, c) = config.train.batch_size, exp.input_shape[1:]
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.standard_normal((b, h, w, c), np.float32),
        "label": rng.integers(0, 10, (b,)).astype(np.int32),
    }
    batch = jax.device_put(batch, batch_sharding(exp.mesh))
    key = jax.device_put(jax.random.PRNGKey(1), replicated(exp.mesh))
    for _ in range(3):  # compile, warm up
        state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        state, metrics = step(state, batch, key)
    jax.block_until_ready((state, metrics))
    return 1e3 * (time.perf_counter() - t) / steps, 1e3 * (time.process_time() - cpu) / steps


def _load() -> str:
    """The 1-minute load average ('' where /proc is absent)."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return ""


def main(argv=None) -> dict:
    args = script_flags.parse(FLAGS, argv, __doc__)
    config = make_config(args)
    load = _load()
    loop, loop_cpu, results = loop_ms(config, args.warmup)
    config.model.dtype = results["compute_dtype"]
    bare, bare_cpu = bare_ms(config, args.steps - args.warmup)
    figures = {
        "model": args.model,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "compute_dtype": results["compute_dtype"],
        "device_kind": results["device_kind"],
        "loop_ms": loop,
        "bare_ms": bare,
        "ratio": loop / bare,
        "loop_cpu_ms": loop_cpu,
        "bare_cpu_ms": bare_cpu,
        "cpu_ratio": loop_cpu / bare_cpu if bare_cpu else None,
        "train_pp": args.train_pp,
        "loadavg": [load, _load()],  # before and after: a shared host's figures move with it
        **{k: v for k, v in results.items() if k.startswith("host_share")},
        "images_per_s_per_chip": results["images_per_s_per_chip"],
    }
    parts = ", ".join(
        f"{k.split('/')[1]} {100 * v:.1f}%"
        for k, v in figures.items()
        if k.startswith("host_share/")
    )
    print(
        f"{args.model} b{args.batch_size} {args.image_size}px {figures['compute_dtype']} on "
        f"{figures['device_kind']}, train_pp {args.train_pp!r}: loop {loop:.1f} ms/step "
        f"({loop_cpu:.1f} ms CPU), bare step {bare:.1f} ms/step ({bare_cpu:.1f} ms CPU), ratio "
        f"{loop / bare:.3f} (CPU {figures['cpu_ratio'] or 0:.3f}), host share "
        f"{100 * figures['host_share']:.1f}% ({parts}); loadavg {figures['loadavg']}"
    )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main()
