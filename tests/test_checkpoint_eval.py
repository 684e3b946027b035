"""eval.py's outcomes: one `error:` line for every bad path or request, metrics printed before
anything is written, and no evaluation writing over another's file."""

import errno
import os
import shutil
import subprocess
import sys

import pytest

from cnnx import checkpoint_eval
from cnnx.checkpoint_eval import output_name
from cnnx.train import loop
from tests.jax_cache import compilation_cache  # noqa: F401
from tests.train.tiny import tiny_config

pytestmark = pytest.mark.usefixtures("compilation_cache")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLIT = "test[:64]"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, compilation_cache):  # noqa: F811
    """A finished tiny run without EMA weights (checkpoints 4, 8, 12)."""
    workdir = str(tmp_path_factory.mktemp("run"))
    loop.train_and_evaluate(tiny_config(), workdir)
    return workdir


def _eval(workdir, capsys, **kwargs):
    code = checkpoint_eval.run(workdir, split=SPLIT, **kwargs)
    out, err = capsys.readouterr()
    return code, out, err


def _never_evaluates(monkeypatch):
    def evaluated(*args, **kwargs):
        raise AssertionError("evaluated although the output path cannot be written")

    monkeypatch.setattr(checkpoint_eval, "evaluate_checkpoint", evaluated)


def _eval_files(workdir):
    names = [f for f in os.listdir(workdir) if f.startswith("eval_")]
    # Each evaluation's arrays (confusion matrix, per-class top-1) in the .npz beside it.
    assert sorted(f for f in names if f.endswith(".npz")) == sorted(
        f.removesuffix(".json") + ".npz" for f in names if f.endswith(".json")
    )
    return sorted(f for f in names if f.endswith(".json"))


def test_ema_of_a_run_without_ema_is_an_error(run_dir, capsys, monkeypatch):
    monkeypatch.setattr(checkpoint_eval, "restore_state", None)  # refused before restoring
    code, out, err = _eval(run_dir, capsys, use_ema=True)
    assert code == 2 and err.startswith("error: --ema: the run in") and "kept no EMA" in err
    assert not _eval_files(run_dir) and "top-1" not in out


def test_each_distinct_evaluation_gets_its_own_file(run_dir, tmp_path, capsys):
    """The default name holds every setting that changes the numbers: step, crop, views,
    EMA, ensemble members, an explicit config; a repeated evaluation rewrites its own."""
    workdir = str(tmp_path / "run")
    shutil.copytree(run_dir, workdir)
    settings = [{}, {"step": 8}, {"crop_pct": 1.0}, {"views": "tencrop(flip=False)"}]
    for options in settings:
        code, out, err = _eval(workdir, capsys, **options)
        assert code == 0, err
        assert "top-1" in out.splitlines()[0] and out.splitlines()[1].startswith("-> ")
    files = _eval_files(workdir)
    assert files == sorted(
        [
            "eval_test[:64]_32_step12.json",
            "eval_test[:64]_32_step8.json",
            "eval_test[:64]_32_step12_crop1.0.json",
            "eval_test[:64]_32_step12_tencrop(flip=False).json",
        ]
    )
    results = {"split": "test", "image_size": 32, "step": 12}
    names = {
        output_name(results, explicit=options)
        for options in (
            {},
            {"use_ema": True},
            {"views": "tencrop"},
            {"ensemble": ("a",)},
            {"ensemble": ("b",)},
            {"config": tiny_config()},
            {"config": tiny_config(**{"data.image_size": 36})},
        )
    }
    assert len(names) == 7


def test_output_into_a_missing_folder_is_made_first(run_dir, tmp_path, capsys):
    out_path = tmp_path / "new" / "deeper" / "eval.json"
    code, out, err = _eval(run_dir, capsys, step=4, output=str(out_path))
    assert code == 0, err
    assert out_path.exists() and f"-> {out_path}" in out


def test_an_output_under_a_file_fails_before_evaluating(run_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    _never_evaluates(monkeypatch)
    code, _, err = _eval(run_dir, capsys, output=str(tmp_path / "file" / "eval.json"))
    assert code == 2 and "folder of --output" in err and "is an existing file" in err


def test_a_read_only_workdir_fails_before_evaluating(run_dir, capsys, monkeypatch):
    """os.access is what reports a read-only mount (EROFS) even to root."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: m != os.W_OK and real_access(p, m))
    _never_evaluates(monkeypatch)
    code, _, err = _eval(run_dir, capsys)
    assert code == 2 and "is not writable" in err and "--output=PATH" in err


def test_a_failed_write_comes_after_the_metrics(run_dir, tmp_path, capsys, monkeypatch):
    def read_only(results, path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(checkpoint_eval, "write_json", read_only)
    code, out, err = _eval(run_dir, capsys, step=4, output=str(tmp_path / "eval.json"))
    assert code == 2 and "top-1" in out and "step 4" in out
    assert err.count("error:") == 1 and "Read-only file system" in err
    assert "metrics are printed above" in err


def test_bad_workdirs_and_configs_are_one_line(run_dir, tmp_path, capsys, monkeypatch):
    _never_evaluates(monkeypatch)
    (tmp_path / "a_file").write_text("x")
    code, _, err = _eval(str(tmp_path / "a_file"), capsys)
    assert code == 2 and "is an existing file, not a folder" in err

    truncated = tmp_path / "truncated"
    shutil.copytree(run_dir, truncated)
    text = (truncated / "config.json").read_text()
    (truncated / "config.json").write_text(text[: len(text) // 2])
    code, _, err = _eval(str(truncated), capsys)
    assert code == 2 and "config.json is unreadable" in err and "--config=" in err


@pytest.mark.slow
def test_eval_cli_damage_and_missing_step_end_on_their_error_line(run_dir, tmp_path):
    """eval.py itself: a truncated checkpoint file and --step=123, each one line, last."""
    workdir = tmp_path / "run"
    shutil.copytree(run_dir, workdir)
    step_dir = workdir / "checkpoints" / "12"
    largest = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    os.truncate(largest, 100)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    for flag, expected in (("--step=123", "steps there are 12, 8, 4"), ("", "12 is unreadable")):
        args = [sys.executable, "eval.py", f"--workdir={workdir}", f"--split={SPLIT}", flag]
        args = [a for a in args if a]
        p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert lines[-1].startswith("error: ") and expected in lines[-1], lines[-3:]
