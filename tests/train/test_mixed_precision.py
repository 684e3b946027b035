"""model.dtype: bfloat16 compute trains as well as float32, with float32 state."""

import jax
import jax.numpy as jnp
import pytest

from cnnx.train.checkpoint import load_variables
from cnnx.train.loop import train_and_evaluate
from tests.train.tiny import tiny_config


@pytest.mark.slow
def test_bfloat16_reaches_float32_top1_on_digits(tmp_path):
    top1 = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_config(
            **{
                "model.dtype": dtype,
                "train.num_steps": 150,
                "train.log_every_steps": 50,
                "ckpt.every_steps": 150,
                "optim.base_lr": 0.1,
                "data.eval_split": "test",
                "eval.batch_size": 128,
            }
        )
        results = train_and_evaluate(config, str(tmp_path / dtype))
        assert results["compute_dtype"] == dtype and results["dtype_requested"] == dtype
        top1[dtype] = results["eval/top1"]
        # Parameters and BatchNorm statistics stay float32 whatever the compute dtype.
        saved = load_variables(str(tmp_path / dtype))
        assert {x.dtype for x in jax.tree.leaves(saved)} == {jnp.dtype(jnp.float32)}
    assert top1["float32"] > 90.0, top1
    assert abs(top1["bfloat16"] - top1["float32"]) <= 1.0, top1
