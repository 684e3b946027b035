"""scripts/fault_matrix.py: the classifier on fixture cases made to end each way (so it can
fail), and two of the cheapest real cases through the script itself."""

import json
import os
import subprocess
import sys

import pytest

from scripts.faults import CASES
from scripts.faults.core import REPO, Case, Seen, Shared, changed, run_case, select, snapshot

BRIEF = {"signals", "multiprocess", "disk", "workdir", "gcs", "sweeps", "onednn", "folder"}
BRIEF |= {"config", "cache", "eval", "nan"}


def _py(ctx, code: str):
    return ctx.run(["-c", code])


def _traceback(ctx):
    return Seen([_py(ctx, "raise RuntimeError('boom')")])


def _one_error_line(ctx):
    code = "import sys; print('error: the disk is full: free space and rerun'); sys.exit(2)"
    return Seen([_py(ctx, code)], match="disk")


def _silently_accepted(ctx):
    return Seen([_py(ctx, "print('done')")])


def _hang(ctx):
    return Seen([_py(ctx, "import time; time.sleep(60)")])


def _loses_a_checkpoint(ctx):
    """A 'run' that deletes the checkpoint written before it, and ends with a clear error."""
    ckpt = ctx.path("wd", "checkpoints", "4")
    os.makedirs(ckpt)
    with open(os.path.join(ckpt, "state"), "w") as f:
        f.write("weights")
    before = snapshot(ctx.path("wd"))
    code = f"import os, sys; os.remove({ckpt + '/state'!r}); print('error: x'); sys.exit(1)"
    run = _py(ctx, code)
    return Seen([run], lost=changed(before, snapshot(ctx.path("wd"))))


FIXTURES = {
    "traceback": (_traceback, "unclear", "traceback"),
    "error_line": (_one_error_line, "survived", "error: the disk is full"),
    "silent": (_silently_accepted, "wrong", "accepted silently"),
    "hang": (_hang, "unclear", "hang"),
    "lost": (_loses_a_checkpoint, "lost", "removed, e.g. checkpoints/4/state"),
}


@pytest.mark.parametrize("name", list(FIXTURES))
def test_the_classifier_on_fixture_cases(name, tmp_path):
    fn, outcome, evidence = FIXTURES[name]
    case = Case(name, "fixture", "python -c", name, fn, timeout_s=2)
    row = run_case(case, Shared(str(tmp_path)), str(tmp_path))
    assert row["outcome"] == outcome, row
    assert evidence in row["evidence"], row


def test_the_table_covers_the_brief():
    assert len(CASES) >= 60
    assert {c.category for c in CASES} >= BRIEF
    assert all(c.setup and c.fault for c in CASES)
    assert [c.name for c in select(CASES, ["sigkill_*"], ["signals"])][:2] == [
        "sigkill_step1",
        "sigkill_step6",
    ]


def test_two_real_cases_through_the_script(tmp_path):
    out = tmp_path / "m.json"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/fault_matrix.py",
            "--cases=missing_config_file,config_arg_typo",
            f"--output={out}",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["figures"] == {"tried": 2, "survived": 2, "lost": 0, "unclear": 0, "wrong": 0}
    rows = {r["case"]: r for r in result["cases"]}
    assert "nope" in rows["missing_config_file"]["evidence"]
    assert rows["config_arg_typo"]["evidence"].startswith("error:")
    assert "tried 2 survived 2 lost 0 unclear 0 wrong 0" in proc.stdout
