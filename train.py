"""Train a cnnx model.

    python train.py --config=configs/default.py --workdir=workdirs/lenet5
    python train.py --config=configs/resnet.py:50 --config.train.batch_size=1024 --workdir=DIR

Several processes (one per host): every process runs the same command; on Cloud TPU, SLURM
or Open MPI jax.distributed is set up automatically, elsewhere pass --coordinator_address,
--num_processes and --process_id.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from cnnx import process_defaults
from cnnx.cli import CONFIG_HELP
from cnnx.train import compile_cache, distributed

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", CONFIG_HELP, lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Checkpoints, logs and results of this run go here (required)."
)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Continue the run in --workdir although this config differs from its config.json "
    "(recorded in <workdir>/config_history.jsonl). Without it such a restart is refused.",
)
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config (file + overrides), validated, and exit."
)
distributed.define_flags()
compile_cache.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from cnnx.cli import print_config, run_training, start_process

    if _PRINT_CONFIG.value:
        return print_config(_CONFIG.value)
    if not _WORKDIR.value:
        print(
            "error: --workdir is required: the directory of this run (checkpoints, logs, "
            "results), e.g. --workdir=workdirs/lenet5. A new run needs a new directory; the "
            "same directory resumes its run.",
            file=sys.stderr,
        )
        return 2
    compile_cache.setup()
    if (failed := start_process()) is not None:
        return failed
    return run_training(
        _CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value
    )


if __name__ == "__main__":
    from cnnx.cli import parse_flags

    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
