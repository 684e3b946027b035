"""A wrong config path or config arg is one `error:` line (exit 2) naming what exists, for
every entry point that takes a config file: train.py, eval.py, scripts/fixres.py (through
`cnnx.cli.parse_flags`) and scripts/sweep.py (through `cnnx.sweeps.spec`)."""

import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from cnnx.cli import parse_flags
from cnnx.errors import ConfigError
from cnnx.sweeps.spec import load_sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = {
    "config_path_that_does_not_exist": (
        "configs/resnet50.py",
        [
            "config file configs/resnet50.py not found",
            "Did you mean configs/resnet.py:50?",
            "Configs in configs/:",
            "default.py",
            "resnet_cifar.py",
            "sweeps/",
        ],
    ),
    "misspelled_config_file": (
        "configs/efficientnet_b9.py",
        ["not found", "configs/efficientnet_b0.py", "configs/efficientnet.py"],
    ),
    "variant_file_of_a_family_config": (
        "configs/efficientnet_b3.py",
        ["not found", "Did you mean configs/efficientnet.py:b3 or"],
    ),
    "config_variant_that_does_not_exist": (
        "configs/efficientnet.py:b9",
        ["variant must be one of", "'b7'", "configs/efficientnet.py takes arg: the variant"],
    ),
    "config_arg_that_does_not_exist": (
        "configs/resnet.py:50,papr",
        ["unknown config arg 'papr'", "options: depth=50, paper=False, tv2=False"],
    ),
    "config_arg_get_config_refuses": (
        "configs/resnet.py:51",
        [
            "--config=configs/resnet.py:51:",
            "depth must be one of (18, 34, 50, 101, 152), got 51",
            "configs/resnet.py takes arg: depth (18, 34, 50, 101, 152)",
        ],
    ),
    "config_arg_that_fails_inside_get_config": (
        "configs/resnet_cifar.py:abc",
        ["depth='abc' must be an integer", "configs/resnet_cifar.py takes arg: depth (20, 32, 44"],
    ),
}


def _parse(argv, capsys):
    """parse_flags on fresh flags like train.py's; returns (exit code, stderr)."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Config.", flag_values=fv, lock_config=True)
    flags.DEFINE_string("workdir", None, "Workdir.", flag_values=fv)
    with pytest.raises(SystemExit) as e:
        parse_flags(["prog", *argv], fv)
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(CASES))
def test_config_errors_are_one_line(case, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    ref, expected = CASES[case]
    code, err = _parse([f"--config={ref}", "--workdir=/tmp/x"], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err
    assert "common.py" not in err  # the shared kit is no config


def test_config_path_as_separate_argument(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, err = _parse(["--config", "configs/nope.py"], capsys)
    assert code == 2 and "config file configs/nope.py not found" in err


def test_sweep_file_that_does_not_exist_lists_the_sweeps(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match=r"efficientnet\.py not found.*efficientnet_grid\.py"):
        load_sweep("configs/sweeps/efficientnet.py")


@pytest.mark.parametrize("script", ["train.py", "eval.py", "scripts/fixres.py"])
def test_entry_points_print_one_line(script):
    """The real entry points, where the traceback used to come from (before any jax work)."""
    args = [sys.executable, script, "--config=configs/resnet50.py", "--workdir=/tmp/none"]
    p = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("error: config file configs/resnet50")


@pytest.mark.parametrize("script", ["train.py", "eval.py", "scripts/fixres.py"])
def test_help_exits_0_and_says_where_the_config_schema_is(script):
    """absl exits 1 after --help; asking for help is no error (exit 0, usage on stdout)."""
    p = subprocess.run(
        [sys.executable, os.path.join(REPO, script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "--workdir" in p.stdout
    if script == "train.py":
        assert "cnnx/config_schema.py" in p.stdout and "--config.<section>.<key>" in p.stdout
