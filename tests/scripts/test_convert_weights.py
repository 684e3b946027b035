"""scripts/convert_weights.py end to end: a torch-written file -> a cnnx checkpoint whose
logits match torch; shape mismatches refused."""

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
    return subprocess.run([sys.executable, "scripts/convert_weights.py", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


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
    p = _run("--model", "resnet18", "--from", str(tmp_path / "r18.pth"), "--out",
             str(tmp_path / "out"))  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "mapped 102 of 122 tensors" in p.stdout and "num_batches_tracked" in p.stdout
    x = np.random.RandomState(0).randn(2, 3, 64, 64).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    variables = load_variables(str(tmp_path / "out"))
    out = models.create("resnet18").apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)),
                                          train=False)  # fmt: skip
    assert np.abs(np.asarray(out) - ref).max() / np.abs(ref).max() < 1e-4


def test_shape_mismatch_is_refused(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    p = _run("--model", "resnet34", "--from", str(tmp_path / "r18.pth"), "--out",
             str(tmp_path / "out"))  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "left unfilled" in p.stderr
    assert not os.path.exists(tmp_path / "out" / "checkpoints")
