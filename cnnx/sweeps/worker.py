"""Runs one trial of a sweep: `python -m cnnx.sweeps.worker --sweep=FILE[:ARG] --overrides=JSON
--workdir=D`.

The sweep worker starts this as a subprocess per trial. The trial's config is rebuilt here from
the sweep file (never serialised through JSON, so placeholder types survive) and the trial's
overrides (JSON: Optuna's parameter values are JSON types). The outcome, with parameters and
MACs, goes to `<workdir>/trial_result.json` (atomic write), its hyperparameters to the trial's
TensorBoard log (`_hparams_/session_start_info`, for the HParams tab).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULT_FILE = "trial_result.json"


def model_cost(config) -> dict:
    """Parameters and MACs (one image, eval resolution) of a config's model, from its jaxpr.

    With distillation (`train.distill`), also 'train_macs': the forward MACs of one training
    image (at `data.image_size`) in the step, {'student', 'teacher', 'total'}: the frozen
    teacher runs forward on every image the student trains on (the student's backward pass
    adds about twice its forward; the teacher has none). Logged as well.
    """
    import jax
    import numpy as np

    from cnnx.analysis.flops import total_macs
    from cnnx.analysis.trace import trace
    from cnnx.cli import distillation_macs_logged
    from cnnx.train.experiment import setup

    exp = setup(config)
    shape = (1, exp.eval_image_size, exp.eval_image_size, exp.channels)
    abstract = jax.eval_shape(
        lambda: exp.model.init(jax.random.PRNGKey(0), np.zeros(shape, np.float32), train=False)
    )
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.get("params", {})))
    cost = {
        "num_params": n_params,
        "macs": int(total_macs(trace(exp.model, shape))),
        "eval_image_size": exp.eval_image_size,
    }
    train_macs = distillation_macs_logged(config, exp)
    if train_macs is not None:
        cost["train_macs"] = train_macs
    return cost


def write_hparams(workdir: str, hparams: dict) -> None:
    """The trial's swept values as TensorBoard hyperparameters (HParams tab), process 0 only.

    Values that are not bool/int/float/str (tuples) are written as text.
    """
    from cnnx.train.distributed import is_writer
    from cnnx.train.metrics_log import metric_writer

    clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}
    writer = metric_writer(workdir, just_logging=not is_writer())  # gs:// aware
    writer.write_hparams(clean)
    writer.close()


def run_trial(
    config, workdir: str, hparams: dict | None = None, snapped: dict | None = None
) -> dict:
    """Trains and evaluates one trial's config in `workdir` (resuming from its checkpoint).

    Args:
      config: the trial's full config (base with the trial's overrides, sizes snapped:
        `cnnx.sweeps.sizes.trial_config`).
      workdir: the trial's training workdir (local or gs://).
      hparams: swept values to show in TensorBoard's HParams tab (None: none written).
      snapped: {key: [rule's size, size used]} of the derived sizes that were snapped; kept
        in the result, and the HParams show the size used.

    Returns:
      {'status', 'metrics', 'num_params', 'macs', 'eval_image_size', 'wall_time_s'} (and
      'snapped' when given, 'train_macs' with distillation, see `model_cost`); also written
      atomically to `<workdir>/trial_result.json`.
    """
    from etils import epath

    from cnnx.train.distributed import is_writer
    from cnnx.train.loop import train_and_evaluate
    from cnnx.train.workdir import write_json_atomic

    t0 = time.time()
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    if hparams:
        write_hparams(workdir, {**hparams, **{k: v[1] for k, v in (snapped or {}).items()}})
    cost = model_cost(config)
    results = train_and_evaluate(config, workdir, train_macs=cost.get("train_macs"))
    out = {
        "status": results.pop("status"),
        "metrics": {k: v for k, v in results.items() if isinstance(v, (int, float))},
        **cost,
        "wall_time_s": time.time() - t0,
        **({"snapped": snapped} if snapped else {}),
    }
    if is_writer():  # a multi-process sweep: every process ran the trial, one writes
        write_json_atomic(str(epath.Path(workdir) / RESULT_FILE), out)
    return out


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--overrides", required=True, help="the trial's overrides, JSON")
    parser.add_argument("--index", type=int, default=0, help="the trial's index (labels)")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)

    from cnnx.sweeps.sizes import trial_config
    from cnnx.sweeps.spec import load_sweep
    from cnnx.train import compile_cache, logs

    logs.configure()
    compile_cache.setup()  # the sweep's trials reuse each other's compiled steps
    from cnnx.errors import CnnxError

    try:
        sweep = load_sweep(args.sweep)
        trial = sweep.make_trial(json.loads(args.overrides), args.index)
        config, snapped = trial_config(sweep, trial)
        out = run_trial(
            config, args.workdir, hparams={**trial.overrides, **trial.tags}, snapped=snapped
        )
    except CnnxError as e:  # a config the run refuses: one line, the record's reason
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if out["status"] == "completed" else 143


if __name__ == "__main__":
    sys.exit(main())
