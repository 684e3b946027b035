"""One process of a multi-process CPU run (spawned by test_multiprocess.py).

usage: python -m tests.train.multiprocess_worker PORT NUM_PROCESSES PROCESS_ID DEVICES WORKDIR
           [SECTION.KEY=VALUE ...]   (config overrides, values as Python literals)
"""

import ast
import os
import sys

port, num_processes, process_id, devices, workdir = sys.argv[1:6]
overrides = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in sys.argv[6:])}
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import jax  # noqa: E402

jax.config.update("jax_platforms", "cpu")

from absl import logging  # noqa: E402

from cnnx.train import distributed  # noqa: E402

logging.set_verbosity(logging.INFO)  # the test reads the mesh / sharding line

if int(num_processes) > 1:
    distributed.maybe_initialize(f"localhost:{port}", int(num_processes), int(process_id))

from cnnx.train.loop import train_and_evaluate  # noqa: E402
from tests.train.tiny import tiny_config  # noqa: E402

results = train_and_evaluate(tiny_config(**{"train.num_steps": 6, **overrides}), workdir)
print("RESULT", jax.process_index(), jax.process_count(), jax.device_count(), results["step"])
