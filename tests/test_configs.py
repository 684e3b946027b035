"""Every config file loads locked, with each of its args, and runs with its `smoke` arg; the
shared config kit (configs/common.py)."""

import functools
import glob
import importlib.util
import os

import pytest

from cnnx import models
from cnnx.config_schema import base_config
from cnnx.train.loop import train_and_evaluate
from configs import common
from configs.efficientnet import VARIANTS as EFFICIENTNET_VARIANTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/common.py is the kit the config files share, not a config.
CONFIG_FILES = sorted(
    p for p in glob.glob(os.path.join(REPO, "configs", "*.py")) if not p.endswith("common.py")
)
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
    "findings.py": "regularisation,smoke",
    "efficientnet.py": "b0,smoke",
    "efficientnet_b0.py": "smoke",
}

# Further recipes of a config file, smoke-tested like the files' own smoke args.
RECIPE_SMOKE_ARGS = [
    ("resnet.py", "50,tv2,smoke"),
    ("resnet.py", "50,rsb_a1,smoke"),
    ("resnet.py", "50,rsb_a2,smoke"),
    ("resnet.py", "50,rsb_a3,smoke"),
]

EFFICIENTNET = os.path.join(REPO, "configs", "efficientnet.py")


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


# efficientnet_b0.py is efficientnet.py:b0 (test below); B1-B7 differ only in the model, and
# the registry-wide tests train those.
SMOKE_RUN = {k: v for k, v in SMOKE_ARGS.items() if k != "efficientnet_b0.py"}


@pytest.mark.parametrize("name,arg", sorted(SMOKE_ARGS.items()) + RECIPE_SMOKE_ARGS)
def test_smoke_config_builds(name, arg):
    c = load(os.path.join(REPO, "configs", name), arg)
    assert c.data.source in ("synthetic", "digits") or c.data.source.startswith("digits")
    # Seconds-to-minutes on a CPU (the digits runs of degradation/fine-tuning are the longest).
    assert 0 < (c.train.num_steps or 0) <= 300
    assert c.smoke  # the final summary line says it is a smoke run, and what is shrunk


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_real_runs_are_not_marked_smoke(path):
    assert load(path).smoke is None


def test_parse_arg():
    parse = functools.partial(common.parse_arg, depth=50, paper=False, scale=1.0, name="x")
    a = parse(None)
    assert (a.depth, a.paper, a.scale, a.name) == (50, False, 1.0, "x")
    a = parse("101,paper,scale=0.5,name=y")
    assert (a.depth, a.paper, a.scale, a.name) == (101, True, 0.5, "y")
    assert parse("paper=false,depth=18").depth == 18 and not parse("paper=false").paper
    assert common.parse_arg("b3,tf", variant="b0", tf=False).variant == "b3"
    assert common.parse_arg("tf", variant="b0", tf=False).tf  # a bool name is never positional
    with pytest.raises(ValueError, match=r"unknown config arg .papr.*depth=50, paper=False"):
        parse("50,papr")
    with pytest.raises(ValueError, match="unknown config arg '101'"):
        parse("paper,101")  # only the first item is positional
    with pytest.raises(ValueError, match="depth='deep' must be an integer"):
        parse("deep")
    with pytest.raises(ValueError, match="paper='maybe' must be true or false"):
        parse("paper=maybe")
    with pytest.raises(ValueError, match="given twice"):
        parse("50,depth=18")


def test_digits_data():
    c = common.digits_data(base_config(), padding=1)
    assert c.data.source == "digits" and c.data.cache
    assert c.data.train_pp == "random_crop(padding=1)|normalize"
    assert (c.data.mean, c.data.std) == ((0.5,), (0.5,))
    assert c.data.shuffle_buffer >= common.DIGITS_TRAIN_EXAMPLES  # the whole split


@pytest.mark.parametrize("variant", EFFICIENTNET_VARIANTS)
@pytest.mark.parametrize("tf", [False, True])
def test_efficientnet_variants_follow_the_registry(variant, tf):
    c = load(EFFICIENTNET, f"{variant},tf" if tf else variant)
    spec = models.get_spec(f"{'tf_' if tf else ''}efficientnet_{variant}")
    assert c.model.name == spec.name
    assert c.model.dropout_rate == spec.dropout
    assert c.model.drop_path_rate == spec.drop_path == 0.2  # Tan & Le 2019, every variant
    assert c.data.image_size == spec.resolution
    assert c.data.crop_pct == spec.resolution / (spec.resolution + 32)


@pytest.mark.parametrize("arg", [None, "tf", "smoke", "tf,smoke"])
def test_efficientnet_b0_is_an_alias(arg):
    b0 = load(os.path.join(REPO, "configs", "efficientnet_b0.py"), arg)
    assert b0 == load(EFFICIENTNET, ",".join(filter(None, ("b0", arg))))


@pytest.mark.parametrize(
    "name,arg",
    [
        ("default.py", None),
        ("resnet20_digits_recipe.py", None),
        ("resnet_cifar.py", "20,digits"),
        ("resnet_cifar.py", "56,digits"),
    ],
)
def test_digits_runs_evaluate_a_few_times(name, arg):
    """An evaluation of the digits costs about an epoch of training: a few per run, not one
    per epoch (the final evaluation comes on top)."""
    c = load(os.path.join(REPO, "configs", name), arg)
    steps_per_epoch = common.DIGITS_TRAIN_EXAMPLES // c.train.batch_size
    total = c.train.num_steps or round(c.train.num_epochs * steps_per_epoch)
    assert 2 <= total // c.eval.every_steps <= 6


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", sorted(SMOKE_RUN.items()) + RECIPE_SMOKE_ARGS)
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


@pytest.mark.parametrize(
    "path",
    CONFIG_FILES + sorted(glob.glob(os.path.join(REPO, "configs", "sweeps", "*.py"))),
    ids=lambda p: os.path.relpath(p, os.path.join(REPO, "configs")),
)
def test_every_config_and_sweep_file_refuses_unknown_arg_words(path):
    # Issue 33.8: `fixres.py:digitz` used to run the whole study. Through `parse_arg` every
    # word is an option: a typo is refused at load (a first word, where it is the variant or
    # the model, is refused as an unknown variant or model instead).
    from cnnx.cli import load_config_module

    module, _ = load_config_module(path)
    load = getattr(module, "get_config", None) or module.get_sweep
    for arg in ("zzqx", "zzqx=1"):
        with pytest.raises(ValueError, match="zzqx"):
            load(arg)


RESNET = os.path.join(REPO, "configs", "resnet.py")


def test_resnet_recipes_are_the_published_ones():
    tv2 = load(RESNET, "50,tv2")
    assert (tv2.train.batch_size, tv2.optim.base_lr * 1024 / 256) == (1024, 0.5)  # lr 0.5
    assert (tv2.data.image_size, tv2.data.eval_image_size) == (176, 224)
    assert round(tv2.data.eval_image_size / tv2.data.crop_pct) == 232
    assert "trivialaugment_wide" in tv2.data.train_pp and tv2.data.repeated_augmentation == 4
    assert tv2.train.ema_decay**32 == pytest.approx(1 - 2e-5 * 1024 * 32 / 600)
    for variant, (epochs, size, lr, repeats) in {
        "a1": (600, 224, 5e-3, 3),
        "a2": (300, 224, 5e-3, 3),
        "a3": (100, 160, 8e-3, 1),
    }.items():
        c = load(RESNET, f"50,rsb_{variant}")
        assert (c.train.num_epochs, c.data.image_size, c.data.repeated_augmentation) == (
            epochs,
            size,
            repeats,
        )
        assert c.optim.base_lr * c.train.batch_size / 256 == pytest.approx(lr)
        assert (c.train.loss, c.train.bce_target_threshold, c.optim.name) == (
            "sigmoid_xent",
            0.2,
            "lamb",
        )
    with pytest.raises(ValueError, match="choose one recipe"):
        load(RESNET, "50,tv2,rsb_a1")
