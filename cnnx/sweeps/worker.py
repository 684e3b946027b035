"""Runs one trial of a sweep: `python -m cnnx.sweeps.worker --sweep=FILE[:ARG] --key=K --workdir=D`.

The driver starts this as a subprocess per trial. The trial's config is rebuilt here from the
sweep file and the trial key (never serialised through JSON, so placeholder types survive).
The outcome, with parameters and MACs, goes to `<workdir>/trial_result.json` (atomic write).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULT_FILE = "trial_result.json"


def model_cost(config) -> dict:
    """Parameters and MACs (one image, eval resolution) of a config's model, from its jaxpr."""
    import jax
    import numpy as np

    from cnnx.analysis.flops import total_macs
    from cnnx.analysis.trace import trace
    from cnnx.train.experiment import setup

    exp = setup(config)
    shape = (1, exp.eval_image_size, exp.eval_image_size, exp.channels)
    abstract = jax.eval_shape(
        lambda: exp.model.init(jax.random.PRNGKey(0), np.zeros(shape, np.float32), train=False)
    )
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.get("params", {})))
    return {
        "num_params": n_params,
        "macs": int(total_macs(trace(exp.model, shape))),
        "eval_image_size": exp.eval_image_size,
    }


def run_trial(config, workdir: str) -> dict:
    """Trains and evaluates one trial's config in `workdir` (resuming from its checkpoint).

    Returns:
      {'status', 'metrics', 'num_params', 'macs', 'eval_image_size', 'wall_time_s'}; also
      written atomically to `<workdir>/trial_result.json`.
    """
    from cnnx.sweeps.results import write_json_atomic
    from cnnx.train.distributed import is_writer
    from cnnx.train.loop import train_and_evaluate

    t0 = time.time()
    os.makedirs(workdir, exist_ok=True)
    cost = model_cost(config)
    results = train_and_evaluate(config, workdir)
    out = {
        "status": results.pop("status"),
        "metrics": {k: v for k, v in results.items() if isinstance(v, (int, float))},
        **cost,
        "wall_time_s": time.time() - t0,
    }
    if is_writer():  # a multi-process sweep: every process ran the trial, one writes
        write_json_atomic(os.path.join(workdir, RESULT_FILE), out)
    return out


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")  # tf.data only; accelerators belong to jax
    from cnnx.sweeps.spec import apply_overrides, load_sweep
    from cnnx.train import logs

    logs.configure()
    sweep = load_sweep(args.sweep)
    trial = next((t for t in sweep.trials if t.key == args.key), None)
    if trial is None:
        print(f"error: no trial with key {args.key} in {args.sweep}", file=sys.stderr)
        return 2
    out = run_trial(apply_overrides(sweep.base, trial.overrides), args.workdir)
    return 0 if out["status"] == "completed" else 143


if __name__ == "__main__":
    sys.exit(main())
