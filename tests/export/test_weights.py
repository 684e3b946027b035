"""`scripts/export_weights.py` (issue 31, item 1): a run's weights load strictly into
torchvision's and timm's own modules (torch.save and safetensors) and give cnnx's logits; a
model without reference goes to safetensors under its cnnx names with its preprocessing and
config beside; what cannot be exported is one `error:` line."""

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import traverse_util

from cnnx import models
from cnnx.config_schema import base_config
from cnnx.train.checkpoint import load_variables
from tests.analysis.scripts import ROOT, load_script
from tests.convert.pretrained_like import normalise, raw_images, rel_error
from tests.export.workdirs import random_variables, write_workdir
from tests.train.tiny import tiny_config

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.torch


def _config(name: str, **model):
    c = base_config()
    c.model.name = name
    c.model.num_classes = 10
    c.data.source = "synthetic"
    c.data.eval_image_size = 64
    c.data.crop_pct = 0.9
    for key, value in model.items():
        c.model[key] = value
    return c


def _export(*argv) -> int:
    return load_script("export_weights").main(list(argv))


def _same_logits(name, variables, net, resolution, **options):
    spec = models.get_spec(name)
    x = normalise(raw_images(2, resolution), spec.mean, spec.std)
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    model = models.create(name, num_classes=10, **options)
    return rel_error(np.asarray(model.apply(variables, x, train=False)), ref)


@pytest.fixture(scope="module")
def resnet_workdir(tmp_path_factory):
    variables = random_variables(models.create("resnet18", num_classes=10), 64)
    ema = random_variables(models.create("resnet18", num_classes=10), 64, seed=1)
    path = tmp_path_factory.mktemp("r18")
    write_workdir(path, _config("resnet18"), variables, step=5, ema=ema)
    return path, variables, ema


def test_torch_file_loads_into_torchvision_with_cnnxs_logits(resnet_workdir, tmp_path):
    workdir, _, ema = resnet_workdir
    out = tmp_path / "r18.pth"
    assert _export(f"--workdir={workdir}", "--to=torch", f"--output={out}", "--ema") == 0
    net = torchvision.models.resnet18(num_classes=10)
    state_dict = torch.load(out, weights_only=True)
    net.load_state_dict(state_dict)  # strict
    assert list(state_dict) == list(torchvision.models.resnet18().state_dict())
    assert _same_logits("resnet18", ema, net, 64) < 1e-4
    described = json.loads((tmp_path / "r18.pth.json").read_text())
    assert described["names"] == "torchvision:resnet18" and described["ema"] is True
    assert described["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert described["preprocessing"]["crop_pct"] == 0.9
    assert described["config"]["model"]["name"] == "resnet18"


def test_safetensors_in_torchvisions_names(resnet_workdir, tmp_path):
    workdir, variables, _ = resnet_workdir
    out = tmp_path / "r18.safetensors"
    assert _export(f"--workdir={workdir}", "--to=safetensors", f"--output={out}") == 0
    net = torchvision.models.resnet18(num_classes=10)
    net.load_state_dict(safetensors_torch.load_file(out))
    assert _same_logits("resnet18", variables, net, 64) < 1e-4


def test_safetensors_load_with_timms_load_checkpoint(tmp_path):
    options = {"image_size": 32}
    variables = random_variables(models.create("vit_ti_16", num_classes=10, **options), 32)
    workdir = write_workdir(tmp_path / "vit", _config("vit_ti_16", **options), variables)
    out = tmp_path / "vit.safetensors"
    assert _export(f"--workdir={workdir}", "--to=safetensors", f"--output={out}") == 0
    net = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=10)
    timm.models.load_checkpoint(net, str(out))  # strict
    assert _same_logits("vit_ti_16", variables, net, 32, **options) < 1e-4


def test_no_reference_writes_cnnx_names_with_the_config_beside(tmp_path):
    variables = random_variables(models.create("lenet5", num_classes=10), 32, channels=1)
    workdir = write_workdir(tmp_path / "lenet", tiny_config(), variables)
    out = tmp_path / "lenet.safetensors"
    assert _export(f"--workdir={workdir}", "--to=safetensors", f"--output={out}") == 0
    from safetensors.numpy import load_file

    loaded = load_file(out)
    saved = traverse_util.flatten_dict(load_variables(workdir), sep="/")
    assert sorted(loaded) == sorted(saved) and "params/c1/kernel" in loaded
    for key, value in saved.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    described = json.loads((tmp_path / "lenet.safetensors.json").read_text())
    assert described["names"] == "cnnx" and described["num_classes"] == 10
    assert (
        described["preprocessing"]["mean"] == [0.5] and described["preprocessing"]["channels"] == 1
    )
    assert described["config"]["data"]["source"] == "digits"


def test_what_cannot_be_exported_is_one_error_line(resnet_workdir, tmp_path, capsys):
    workdir, _, _ = resnet_workdir
    lenet = write_workdir(
        tmp_path / "lenet",
        tiny_config(),
        random_variables(models.create("lenet5", num_classes=10), 32, channels=1),
    )
    cases = {
        f"--workdir={lenet} --to=torch": "lenet5 has no torchvision / timm reference",
        f"--workdir={workdir} --to=torch --step=9": "No checkpoint 9",
        f"--workdir={tmp_path} --to=torch": "config.json not found",
    }
    for argv, message in cases.items():
        assert _export(*argv.split(), f"--output={tmp_path / 'x.pth'}") == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.pth").exists()
    p = subprocess.run(
        [sys.executable, "scripts/export_weights.py", f"--workdir={lenet}", "--to=torch",
         f"--output={tmp_path / 'x.pth'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr


def test_options_without_counterpart_are_refused(tmp_path, capsys):
    options = {"width_mult": 0.5}
    variables = random_variables(models.create("resnet18", num_classes=10, **options), 64)
    workdir = write_workdir(tmp_path / "thin", _config("resnet18", **options), variables)
    assert _export(f"--workdir={workdir}", "--to=torch", f"--output={tmp_path / 'x.pth'}") == 2
    assert "width_mult=0.5 has no counterpart" in capsys.readouterr().err
    out = tmp_path / "thin.safetensors"
    argv = [f"--workdir={workdir}", "--to=safetensors", "--cnnx_names", f"--output={out}"]
    assert _export(*argv) == 0
