"""The trainer's own loop compiles its train step once, whatever happens between steps.

`test_loop.py` checks a copy of the loop's jit on a fixed batch; this runs
`train_and_evaluate` itself (batches from the input pipeline, evaluations, checkpoints, the
plateau schedule rewriting the optimizer state on the host, a resume) and counts the
compilations JAX logs for `train_step`.
"""

import logging

import jax

from cnnx.train.loop import train_and_evaluate
from tests.train.tiny import tiny_config


def _train_step_compilations(caplog, config, workdir, **kwargs) -> int:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
        train_and_evaluate(config, workdir, **kwargs)
    return sum(
        1
        for r in caplog.records
        if r.msg.startswith("Compiling %s") and "train_step" in str(r.args[0])
    )


def test_loop_compiles_the_step_once_across_evals_checkpoints_and_resume(tmp_path, caplog):
    overrides = {
        "schedule.name": "plateau",  # host-side optimizer-state update after each eval
        "eval.every_steps": 2,
        "ckpt.every_steps": 2,
        "train.num_steps": 4,
        "mesh.data": 1,  # one device compiles fastest; sharding is test_loop's business
    }
    assert _train_step_compilations(caplog, tiny_config(**overrides), str(tmp_path)) == 1
    # Resumed from the step-4 checkpoint: restored arrays must not trigger a second compile.
    overrides["train.num_steps"] = 6  # a longer run: a deliberate change of this one
    config = tiny_config(**overrides)
    assert _train_step_compilations(caplog, config, str(tmp_path), allow_config_change=True) == 1
