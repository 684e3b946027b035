"""The serving artefact (issue 31, item 2): `scripts/export_serving.py` writes serialized
StableHLO that a fresh process without cnnx loads with jax alone and that gives evaluation's
logits (eval.py's preprocessing and model on the same uint8 images) for two batch sizes; the
folded-in preprocessing is evaluation's, op by op; the artefact is lowered for cpu, cuda and
tpu and holds no cnnx-only custom call."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from cnnx import models
from cnnx.errors import ConfigError
from cnnx.export import serving
from cnnx.export.run import TrainedRun, load_run
from tests.analysis.scripts import load_script
from tests.export.workdirs import random_variables, write_workdir
from tests.train.tiny import tiny_config

# The README's loader, in a process where cnnx cannot be imported: not on sys.path, and
# blocked in sys.modules (which also defeats an editable install's import hook).
LOADER = """
import os, sys
sys.modules["cnnx"] = None
sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "cnnx"))]
import jax
import numpy as np

with open(sys.argv[1], "rb") as f:
    serving = jax.export.deserialize(bytearray(f.read()))
images = np.load(sys.argv[2])
np.savez(sys.argv[3], **{str(n): np.asarray(serving.call(images[:n])) for n in (1, 3)})
try:
    import cnnx  # noqa: F401
except ImportError:
    print("cnnx not importable")
"""


def _eval_logits(config, run, images):
    """What evaluation computes for `images`: the eval pp of the run's config, then the model."""
    from cnnx.data.pp import build_batched
    from cnnx.train.experiment import setup

    exp = setup(config)
    pp = build_batched(config.data.eval_pp, exp.pp_context(train=False))
    x = pp({"image": images})["image"]
    return np.asarray(exp.model.apply(run.variables, x, train=False))


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """LeNet-5 on the digits, evaluated with a resize and centre crop at 0.875."""
    config = tiny_config(**{"data.eval_pp": "resize_crop|normalize", "data.crop_pct": 0.875})
    variables = random_variables(models.create("lenet5", num_classes=10), 32, channels=1)
    path = write_workdir(tmp_path_factory.mktemp("lenet"), config, variables)
    return config, path


def test_artefact_serves_evaluations_logits_without_cnnx(lenet_run, tmp_path):
    config, workdir = lenet_run
    output = tmp_path / "lenet.jax"
    argv = [f"--workdir={workdir}", f"--output={output}", "--input_size=40,48"]
    assert load_script("export_serving").main(argv) == 0
    described = json.loads((tmp_path / "lenet.jax.json").read_text())
    assert described["input"] == {"shape": ["batch", 40, 48, 1], "dtype": "uint8"}
    assert described["platforms"] == ["cpu", "cuda", "tpu"]
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 1), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    p = subprocess.run(
        [sys.executable, "-c", LOADER, str(output), "images.npy", "logits.npz"],
        cwd=tmp_path,
        env={**env, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "cnnx not importable" in p.stdout
    served = np.load(tmp_path / "logits.npz")
    want = _eval_logits(config, load_run(workdir), images)
    for n in (1, 3):
        assert served[str(n)].shape == (n, 10) and served[str(n)].dtype == np.float32
        err = np.abs(served[str(n)] - want[:n]).max() / np.abs(want[:n]).max()
        assert err < 1e-4, (n, err)


def _run_with(eval_pp: str, size: int, crop_pct: float, channels: int = 3) -> TrainedRun:
    return TrainedRun(
        name="lenet5",
        options={},
        variables={},
        config={},
        eval_image_size=size,
        crop_pct=crop_pct,
        eval_pp=eval_pp,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        channels=channels,
    )


@pytest.mark.parametrize(
    "eval_pp,height,width",
    [
        ("resize_crop|normalize", 256, 256),  # the default input: no resize, a centre crop
        ("resize_crop|normalize", 300, 217),  # downscale, portrait and landscape crops
        ("resize_crop(crop_pct=0.95)|normalize", 150, 400),
        ("resize_crop|normalize", 40, 61),  # upscale
        ("decode|resize|normalize", 97, 50),
        ("resize_crop", 224, 224),  # no normalisation: pixels on the 0-255 scale
    ],
)
def test_preprocessing_is_evaluations(eval_pp, height, width):
    import tensorflow as tf

    from cnnx.data.pp import PPContext, build, build_batched

    run = _run_with(eval_pp, 224, 0.875)
    ctx = PPContext(224, 0.875, run.mean, run.std, 3)
    images = np.random.default_rng(1).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    ours = np.asarray(jax.jit(serving.preprocess_fn(run))(images))
    batched = build_batched(eval_pp, ctx)({"image": images})["image"]
    single = build(eval_pp, ctx)({"image": tf.constant(images[0])})["image"].numpy()
    grey_levels = 1.0 if "normalize" not in eval_pp else 255 * np.asarray(run.std)
    assert ours.shape == batched.shape == (2, 224, 224, 3)
    # Float32 rounding of the resize: under a hundredth of a grey level.
    assert (np.abs(ours - batched) * grey_levels).max() < 1e-2
    np.testing.assert_array_equal(batched[0], single)


def test_resize_sizes_are_evaluations():
    import tensorflow as tf

    from cnnx.data.preprocess import _shorter_side_size

    rng = np.random.default_rng(2)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(8, 1200, 2))
        size = int(rng.choice([32, 64, 224, 299, 380]))
        pct = float(rng.choice([0.875, 0.9, 0.95, 1.0, 0.765]))
        want = tuple(int(v) for v in _shorter_side_size(tf.constant(h), tf.constant(w), size, pct))
        assert serving.shorter_side_size(h, w, size, pct) == want, (h, w, size, pct)
    assert serving.default_input_size(_run_with("resize_crop|normalize", 224, 0.875)) == (256, 256)
    assert serving.default_input_size(_run_with("resize|normalize", 32, 0.875)) == (32, 32)


def test_lowered_for_every_platform_with_standard_ops_only(lenet_run):
    _, workdir = lenet_run
    exported = serving.export_serving(load_run(workdir))
    assert exported.platforms == ("cpu", "cuda", "tpu")
    assert str(exported.in_avals[0]) == "uint8[batch,37,37,1]"
    calls = set(re.findall(r"stablehlo.custom_call @(\w+)", exported.mlir_module()))
    assert calls <= {"shape_assertion"}, calls  # shape checks of the symbolic batch only


def test_unservable_preprocessing_is_refused(lenet_run):
    _, workdir = lenet_run
    run = load_run(workdir)
    with pytest.raises(ConfigError, match=r"'flip' .* has no serving form"):
        serving.export_serving(TrainedRun(**{**run.__dict__, "eval_pp": "flip|normalize"}))
    with pytest.raises(ConfigError, match="choose from cpu, cuda, rocm, tpu"):
        serving.export_serving(run, platforms=("gpu",))
