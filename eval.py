"""Evaluate a checkpoint of a cnnx workdir.

    python eval.py --workdir=workdirs/default                       # newest checkpoint
    python eval.py --workdir=DIR --step=600 --split=test --image_size=40 --crop_pct=1.0
    python eval.py --workdir=DIR --views=tencrop --ensemble=DIR2,DIR3 --confusion_png=cm.png
    python eval.py --workdir=DIR --evals=eval,v2                   # the config's evaluators
    python eval.py --workdir=DIR --evals=v2_matched,real           # named test sets
    python eval.py --workdir=DIR --evaluators=my_evals.py          # entries of a file

--evals names the evaluators to run: the config's (`config.evals`; 'eval' is its eval split),
the named test sets of cnnx/evaluate/named_sets.py (ImageNet-V2, ReaL, A, R, Sketch: run on any
ImageNet-1k checkpoint, declared by its config or not) or those of --evaluators, a config file
whose get_config() returns {name: cnnx.evaluate.entries.evaluator(...)} (big_vision's
eval_only, for evaluators the run never declared; its fields take overrides such as
--evaluators.mine.data.split=test). Without --evals: --evaluators' entries, else 'eval'.

Uses the config saved in the workdir unless --config is given; prints top-1 / top-5 (top-5
from 6 classes on), then writes JSON (default <workdir>/eval_<split>_<size>_step<step>
[_<options>].json: one file per distinct evaluation; local or gs://; confusion matrices and
per-class top-1 in the .npz beside it). The evaluation is the
training loop's own (cnnx.evaluate.classification); a long one shows its progress on stderr.
Several processes: as train.py; process 0 prints and writes.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from cnnx import process_defaults
from cnnx.train import compile_cache, distributed

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config (default: the workdir's).")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory.", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: newest).")
_SPLIT = flags.DEFINE_string("split", None, "Split (default: the config's eval split).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Evaluation resolution.")
_CROP_PCT = flags.DEFINE_float("crop_pct", None, "Centre-crop ratio.")
_EMA = flags.DEFINE_bool("ema", False, "Evaluate the EMA weights.")
_VIEWS = flags.DEFINE_string(
    "views",
    None,
    "Test-time views: center, tencrop, multiscale or googlenet, optionally with "
    "arguments, e.g. 'tencrop(flip=False)' or 'multiscale(scales=(1.0, 1.25))'.",
)
_ENSEMBLE = flags.DEFINE_list("ensemble", [], "More workdirs whose probabilities are averaged.")
_EVALS = flags.DEFINE_list(
    "evals",
    [],
    "Evaluators to run: the config's (config.evals names; 'eval': its eval split), "
    "--evaluators', or named test sets (v2_matched, real, imagenet_a, ...).",
)
_EVALUATORS = config_flags.DEFINE_config_file(
    "evaluators",
    None,
    "A config file of more evaluator entries ({name: evaluator(...)}) for this checkpoint.",
)
_CONFUSION = flags.DEFINE_string(
    "confusion_png",
    None,
    "Write the confusion plot here (the matrix up to 30 classes, else the most-confused "
    "pairs and the worst classes).",
)
_OUTPUT = flags.DEFINE_string("output", None, "JSON output path.")
distributed.define_flags()
compile_cache.define_flags()


def main(argv):
    del argv
    from cnnx.checkpoint_eval import run
    from cnnx.cli import start_process

    compile_cache.setup()
    if (failed := start_process()) is not None:
        return failed
    return run(
        _WORKDIR.value,
        _CONFIG.value,
        output=_OUTPUT.value,
        confusion_png=_CONFUSION.value,
        step=_STEP.value,
        split=_SPLIT.value,
        image_size=_IMAGE_SIZE.value,
        crop_pct=_CROP_PCT.value,
        use_ema=_EMA.value,
        views=_VIEWS.value,
        ensemble=tuple(_ENSEMBLE.value),
        evals=tuple(_EVALS.value),
        evaluators=_EVALUATORS.value,
    )


if __name__ == "__main__":
    from cnnx.cli import parse_flags

    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
