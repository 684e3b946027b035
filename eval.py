"""Evaluate a checkpoint of a cnnx workdir.

    python eval.py --workdir=workdirs/default                       # newest checkpoint
    python eval.py --workdir=DIR --step=600 --split=test --image_size=40 --crop_pct=1.0
    python eval.py --workdir=DIR --views=tencrop --ensemble=DIR2,DIR3 --confusion_png=cm.png

Uses the config saved in the workdir unless --config is given; prints top-1 / top-5 and
writes JSON (default <workdir>/eval_<split>_<size>.json). Several processes: as train.py.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags
from ml_collections import config_flags

from cnnx.train import distributed

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
_CONFUSION = flags.DEFINE_string("confusion_png", None, "Write the confusion matrix here.")
_OUTPUT = flags.DEFINE_string("output", None, "JSON output path.")
distributed.define_flags()


def main(argv):
    del argv
    from cnnx.errors import CnnxError
    from cnnx.evaluate.checkpoint_eval import evaluate_checkpoint, load_workdir_config
    from cnnx.train import logs

    logs.configure()
    try:
        distributed.initialize_from_flags()
        config = _CONFIG.value or load_workdir_config(_WORKDIR.value)
        results = evaluate_checkpoint(
            config,
            _WORKDIR.value,
            step=_STEP.value,
            split=_SPLIT.value,
            image_size=_IMAGE_SIZE.value,
            crop_pct=_CROP_PCT.value,
            use_ema=_EMA.value,
            views=_VIEWS.value,
            ensemble=tuple(_ENSEMBLE.value),
        )
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tag = f"_{_VIEWS.value.split('(')[0]}" if _VIEWS.value else ""
    tag += f"_ensemble{len(_ENSEMBLE.value) + 1}" if _ENSEMBLE.value else ""
    name = f"eval_{results['split']}_{results['image_size']}{tag}.json".replace("/", "_")
    out = _OUTPUT.value or os.path.join(_WORKDIR.value, name)
    if not distributed.is_writer():  # every process evaluated; process 0 writes
        return 0
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    if _CONFUSION.value:
        from cnnx.evaluate.multiview import save_confusion_png

        save_confusion_png(results["confusion"], _CONFUSION.value, title=results["model"])
    print(
        f"{results['model']} step {results['step']} on {results['split']} at "
        f"{results['image_size']} px, {results['views']} view(s), "
        f"{len(results['members'])} model(s): top-1 {results['eval/top1']:.2f}%  "
        f"top-5 {results['eval/top5']:.2f}%  loss {results['eval/loss']:.4f}  -> {out}"
    )
    return 0


if __name__ == "__main__":
    from cnnx.cli import parse_flags

    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
