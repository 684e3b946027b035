"""Every config file loads locked, with each of its args, and runs with its `smoke` arg."""

import glob
import importlib.util
import os

import pytest

from cnnx import models
from cnnx.train.loop import train_and_evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
# (file, smoke arg): every config must be runnable in seconds with its smoke arg.
SMOKE_ARGS = {
    "default.py": "smoke",
    "resnet.py": "18,smoke",
    "resnet_cifar.py": "20,smoke",
    "resnet20_digits_recipe.py": "smoke",
    "inception_v3.py": "smoke",
    "convnext.py": "tiny,smoke",
    "alexnet.py": "smoke",
    "vgg.py": "11_lrn,smoke",
    "googlenet.py": "smoke",
    "degradation_cifar.py": "resnet20,smoke",
    "finetune_flowers102.py": "smoke",
    **{f"efficientnet_b{i}.py": "smoke" for i in range(8)},
}


def load(path, arg=None):
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_loads_and_names_a_registered_model(path):
    c = load(path)
    assert c.model.name in models.list_models()
    assert set(c.keys()) >= {"model", "data", "optim", "schedule", "train", "eval", "ckpt", "mesh"}
    with open(path) as f:
        doc = f.read()
    assert "python train.py" in doc  # the docstring gives the exact command


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_every_config_has_a_smoke_arg(path):
    assert os.path.basename(path) in SMOKE_ARGS, "add a smoke arg and list it here"


# EfficientNet B1-B7 share B0's recipe code; only the model differs, and the registry-wide
# tests train those models. Their smoke configs are still built (test below), not run.
SMOKE_RUN = {k: v for k, v in SMOKE_ARGS.items() if not k.startswith("efficientnet_b")}
SMOKE_RUN["efficientnet_b0.py"] = "smoke"


@pytest.mark.parametrize("name,arg", sorted(SMOKE_ARGS.items()))
def test_smoke_config_builds(name, arg):
    c = load(os.path.join(REPO, "configs", name), arg)
    assert c.data.source in ("synthetic", "digits") or c.data.source.startswith("digits")
    # Seconds-to-minutes on a CPU (the digits runs of degradation/fine-tuning are the longest).
    assert 0 < (c.train.num_steps or 0) <= 300


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", sorted(SMOKE_RUN.items()))
def test_smoke_run(name, arg, tmp_path):
    c = load(os.path.join(REPO, "configs", name), arg)
    c.mesh.data = 8 if c.train.batch_size % 8 == 0 else 1
    # The recipe end to end (data, augmentation, optimizer, schedule, EMA, eval, checkpoint)
    # on the family's shallowest member for a few steps: compiling full-depth train steps is
    # minutes on a 2-core CPU, and tests/models/test_registry_wide.py trains every network.
    c.model.depth_mult = 0.01
    c.train.num_steps = min(c.train.num_steps, 8)
    if c.init.checkpoint:  # fine-tuning smoke: start from a quick run of the default config
        base = load(os.path.join(REPO, "configs", "default.py"), "smoke")
        train_and_evaluate(base, str(tmp_path / "pretrained"))
        c.init.checkpoint = str(tmp_path / "pretrained")
    results = train_and_evaluate(c, str(tmp_path / "run"))
    assert results["status"] == "completed"
    assert results["eval/examples"] > 0
