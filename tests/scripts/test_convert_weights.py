"""scripts/convert_weights.py end to end: a torch-written file -> a cnnx checkpoint whose
logits match torch; shape mismatches refused."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.torch


def _run(*args):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.run(
        [sys.executable, "scripts/convert_weights.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_resnet18_file_to_checkpoint_matches_torch(tmp_path):
    from cnnx import models
    from cnnx.train.checkpoint import load_variables

    net = torchvision.models.resnet18().eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    p = _run(
        "--model",
        "resnet18",
        "--torch_weights",
        str(tmp_path / "r18.pth"),
        "--workdir",
        str(tmp_path / "out"),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    # num_batches_tracked is BatchNorm bookkeeping, not a weight left out.
    assert "mapped 102 of 102 tensors" in p.stdout and "left out" not in p.stdout
    assert "mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]" in p.stdout
    x = np.random.RandomState(0).randn(2, 3, 64, 64).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    variables = load_variables(str(tmp_path / "out"))
    out = models.create("resnet18").apply(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False
    )
    assert np.abs(np.asarray(out) - ref).max() / np.abs(ref).max() < 1e-4


def test_shape_mismatch_is_refused(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    p = _run(
        "--model",
        "resnet34",
        "--torch_weights",
        str(tmp_path / "r18.pth"),
        "--workdir",
        str(tmp_path / "out"),
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "left unfilled" in p.stderr
    assert not os.path.exists(tmp_path / "out" / "checkpoints")


@pytest.mark.slow  # ~40 s: Inception v3 built twice in torch, converted, compiled once
def test_pretrained_inception_v3_reproduces_torchvision_on_raw_pixels(tmp_path, monkeypatch):
    """torchvision's pretrained builder sets transform_input=True (not in the state_dict):
    the converted workdir must normalise as that model does, (x - 0.5) / 0.5."""
    import jax

    from cnnx import models
    from cnnx.train.checkpoint import load_variables
    from tests.convert.pretrained_like import (
        normalise,
        pretrained_like,
        raw_images,
        rel_error,
        torch_logits,
    )

    res = 75  # Inception v3's smallest input
    net = pretrained_like("inception_v3", monkeypatch, res)
    assert net.transform_input
    # Saved without its training-only head, as a model built with aux_logits=False saves.
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith("AuxLogits.")}
    torch.save(sd, tmp_path / "iv3.pth")
    p = _run(
        "--model",
        "inception_v3",
        "--torch_weights",
        str(tmp_path / "iv3.pth"),
        "--workdir",
        str(tmp_path / "out"),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "no AuxLogits" in p.stdout and "left out" not in p.stdout
    assert "mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]" in p.stdout
    with open(tmp_path / "out" / "config.json") as f:
        data = json.load(f)["data"]
    assert data["mean"] == data["std"] == [0.5, 0.5, 0.5]
    pixels = raw_images(4, res)
    model = models.create("inception_v3")
    x = jnp.asarray(normalise(pixels, data["mean"], data["std"]))
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        load_variables(str(tmp_path / "out")), x
    )
    assert rel_error(out, torch_logits(net, pixels)) < 1e-4


def test_transform_input_flag_refused_where_meaningless(tmp_path):
    torch.save({"x": torch.zeros(1)}, tmp_path / "w.pth")
    p = _run(
        "--model",
        "resnet18",
        "--torch_weights",
        str(tmp_path / "w.pth"),
        "--workdir",
        str(tmp_path / "out"),
        "--transform_input",
        "false",
    )
    assert p.returncode == 2 and "no transform_input flag" in p.stderr
    assert "Traceback" not in p.stderr
