"""Every finding's runs build their configs at each scale; `paper` names the papers' TFDS
datasets and is checked in this form only (nothing is downloaded)."""

import re

import pytest
from flax import traverse_util

from cnnx.findings import registry
from cnnx.findings.registry import Scale
from cnnx.findings.runs import Run, build_config
from configs import findings as findings_config
from tests.models.helpers import abstract_variables

NAMES = registry.names()


def _sources(config) -> set[str]:
    if "train_resolutions" in config:  # a FixRes config wraps the training config
        config = config.train
    return {config.data.source}


def test_the_suite_has_the_issues_findings():
    assert NAMES == [
        "degradation",
        "vanishing",
        "batchnorm",
        "initialisation",
        "regularisation",
        "bottleneck",
        "scaling",
        "fixres",
        "transfer",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_paper_scale_uses_the_papers_datasets(name, tmp_path):
    runs = registry.get(name).runs(Scale("paper"))
    assert runs and len({r.name for r in runs}) == len(runs)
    expected = {
        "scaling": {"tfds:imagenet2012"},
        "fixres": {"tfds:imagenet2012"},
        "transfer": {"tfds:cifar100", "tfds:cifar10"},
    }.get(name, {"tfds:cifar10"})
    sources = set()
    for run in runs:
        config = build_config(run, str(tmp_path))
        assert config.is_locked
        sources |= _sources(config)
        assert "train_resolutions" in config or config.smoke is None
    assert sources == expected


@pytest.mark.parametrize("scale", ["small", "smoke"])
@pytest.mark.parametrize("name", NAMES)
def test_small_and_smoke_scales_use_the_digits(name, scale, tmp_path):
    for run in registry.get(name).runs(Scale(scale)):
        config = build_config(run, str(tmp_path))
        assert all(s.startswith("digits") for s in _sources(config))
        if scale == "smoke" and run.kind == "train":
            assert config.train.num_steps <= 3 and config.data.image_size <= 32


def test_small_scale_seeds_and_given_seeds():
    assert {r.seed for r in registry.get("regularisation").runs(Scale("small"))} == {0, 1, 2}
    assert {r.seed for r in registry.get("degradation").runs(Scale("small"))} == {0, 1}
    assert {r.seed for r in registry.get("degradation").runs(Scale("small", (5,)))} == {5}
    assert {r.seed for r in registry.get("degradation").runs(Scale("paper"))} == {0}


def test_runs_name_their_source_workdir_and_repeat_by_hand(tmp_path):
    runs = registry.get("transfer").runs(Scale("small"))
    loaded = next(r for r in runs if r.name == "transfer_load2_s1")
    config = build_config(loaded, str(tmp_path))
    assert config.init.checkpoint == str(tmp_path / "runs" / "transfer_source_s0")
    assert config.init.reset_head
    # Bottom-up: of the model's own parameter paths, the stem's and the first two stages' load.
    pattern = re.compile(config.init.load_pattern)
    paths = traverse_util.flatten_dict(abstract_variables("resnet20_cifar", 16)["params"], sep="/")
    stages = {p.split("/")[0].split("_")[0] for p in paths if pattern.search(p)}
    assert stages == {"stem", "stage1", "stage2"}
    assert config.seed == 1
    command = loaded.command(str(tmp_path))
    assert command.startswith("python train.py --config=configs/findings.py:transfer,load=2,")
    assert f"source_run={tmp_path}/runs/transfer_source_s0" in command
    assert f"--config.seed=1 --workdir={tmp_path}/runs/transfer_load2_s1" in command


def test_overrides_may_add_model_options(tmp_path):
    run = Run("x", "configs/degradation_cifar.py:plain20,smoke", (("model.depth", 8),))
    assert build_config(run, str(tmp_path)).model.depth == 8


@pytest.mark.parametrize(
    "arg,match",
    [
        ("batchnorm,init=glorot", "takes only lr, norm, paper, smoke"),
        ("batchnorm,norm=layer", "norm is batch or none"),
        ("transfer,load=2", "needs source_run"),
        ("transfer,load=4,source_run=/x", "load is 0 to 3"),
        ("nope", "recipe is one of"),
    ],
)
def test_config_file_refuses_bad_args(arg, match):
    with pytest.raises(ValueError, match=match):
        findings_config.get_config(arg)
