"""FixRes: train at R_train, evaluate at several R_test, fine-tune at R_test, print the table.

    python scripts/fixres.py --config=configs/sweeps/fixres.py:digits --workdir=/tmp/fixres
    python scripts/fixres.py --config=configs/sweeps/fixres.py:digits \
        --config.test_resolutions='(16,24,32)' --config.finetune.steps=40 --workdir=DIR

Writes DIR/train_<R>/ (resumable training workdirs), DIR/fixres.json (the table, updated after
every R_train; each row keeps its evaluator's metrics, 'test_<R>px_crop0p875/top1', ...:
every test size is an evaluator entry, cnnx.evaluate), DIR/fixres.md and DIR/fixres.png
(top-1 against test resolution, before and after fine-tuning). Several processes (one per
host): as train.py (--coordinator_address, --num_processes, --process_id, or detected on Cloud
TPU / SLURM / Open MPI).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags
from ml_collections import config_flags

from cnnx import process_defaults
from cnnx.train import distributed

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/sweeps/fixres.py", "FixRes config (path[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
distributed.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from cnnx.cli import start_process
    from cnnx.errors import CnnxError

    if (failed := start_process()) is not None:
        return failed
    from etils import epath

    from cnnx.sweeps import fixres
    from cnnx.train import workdir as wd

    workdir = _WORKDIR.value
    try:
        table = fixres.run_fixres(_CONFIG.value, workdir)
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not distributed.is_writer():  # every process ran the protocol; process 0 writes
        return 0
    text = fixres.format_table(table)
    folder = epath.Path(workdir)  # local or gs://
    wd.write_text_atomic(os.fspath(folder / "fixres.md"), text + "\n")
    fixres.plot(table, os.fspath(folder / "fixres.png"))
    print(text)
    print(f"\n-> {workdir}/fixres.json, fixres.md, fixres.png")
    return 0


if __name__ == "__main__":
    from cnnx.cli import parse_flags

    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
