"""One command-line convention for scripts/ (issue 21, item 1): absl flags on each script's own
`FLAGS`, help on every flag, and a `--help` that exits 0 at once without loading jax."""

import subprocess
import sys
import time

import pytest

from tests.analysis.scripts import ROOT, load_script

SCRIPTS = [
    "augment_gallery",
    "benchmark",
    "convert_weights",
    "export_serving",
    "export_weights",
    "gradient_flow",
    "list_models",
    "make_color_digits",
    "results",
    "memory_report",
    "show_filters",
    "summarize",
    "zoo_report",
]
# The field's names; the old argparse ones (left) must be gone.
OLD_NAMES = {
    "out",
    "resolution",
    "batch",
    "json",
    "checkpoint",
    "size",
    "num",
    "from",
    "random_init",
    "vs-torch",
    "plots-dir",
}
PROBE = """
import runpy, sys, time
sys.argv = [{path!r}, "--help"]
t = time.perf_counter()
try:
    runpy.run_path({path!r}, run_name="__main__")
    code = None
except SystemExit as e:
    code = e.code
heavy = [m for m in ("jax", "tensorflow", "torch", "matplotlib") if m in sys.modules]
print("PROBE", code, time.perf_counter() - t, ",".join(heavy) or "-", file=sys.stderr)
"""


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_exits_0_quickly_without_jax(name):
    path = str(ROOT / "scripts" / f"{name}.py")
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", PROBE.format(path=path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    wall = time.perf_counter() - t0
    _, code, seconds, heavy = p.stderr.strip().splitlines()[-1].split()
    assert code == "0", p.stderr
    assert heavy == "-", f"--help of {name} imported {heavy}"
    assert float(seconds) < 3 and wall < 10, (seconds, wall)
    assert "flags:" in p.stdout and "--" in p.stdout


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_flag_has_help_and_a_field_name(name):
    flags_ = load_script(name).FLAGS
    own = {n: flags_[n] for n in flags_}
    assert own, name
    for flag_name, flag in own.items():
        assert flag.help and len(flag.help) > 10, f"{name} --{flag_name} has no help"
        assert "-" not in flag_name, f"{name} --{flag_name}: underscores, not hyphens"
        assert flag_name not in OLD_NAMES, f"{name} still has --{flag_name}"


def test_an_old_flag_name_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        load_script("summarize").main(["--model=lenet5", "--resolution=32"])
    assert e.value.code == 2
    assert "Unknown command line flag 'resolution'" in capsys.readouterr().err


def test_a_required_flag_is_named(capsys):
    with pytest.raises(SystemExit) as e:
        load_script("convert_weights").main(["--model=resnet18"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "torch_weights" in err and "workdir" in err


def test_two_scripts_and_two_parses_in_one_process(tmp_path, capsys):
    """Each script keeps its own flags (no DuplicateFlagError for --models), and a second
    parse starts from the defaults, not from the first one's values."""
    listing = load_script("list_models")
    load_script("zoo_report")  # also defines --models
    assert listing.main(["--models=lenet5"]) == 0
    assert listing.main([]) == 0
    assert "resnet50 " in capsys.readouterr().out


def _train(*args):
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_train_print_config_prints_the_resolved_config_and_exits():
    import json

    p = _train("--config=configs/default.py:smoke", "--config.optim.base_lr=0.3", "--print_config")
    assert p.returncode == 0, p.stderr[-2000:]
    config = json.loads(p.stdout)  # the JSON a run writes to config.json
    assert config["optim"]["base_lr"] == 0.3 and config["model"]["name"] == "lenet5"
    bad = _train("--config=configs/default.py", "--config.optim.base_lr=-1", "--print_config")
    assert bad.returncode == 2 and not bad.stdout
    assert "error: Invalid config: --config.optim.base_lr=-1.0 must be" in bad.stderr


def test_train_help_says_where_the_schema_is_and_how_overrides_work():
    text = _train("--help").stdout
    assert "cnnx/config_schema.py" in text and "--config.<section>.<key>=<value>" in text
    assert "--[no]print_config" in text
