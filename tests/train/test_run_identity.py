"""One run per workdir, its record never rewritten with less: the loop end to end.

- a restart with another config: refused before anything is touched, or recorded on purpose
- a finished workdir: says so, results.json untouched; wall time and train/* accumulate
- SIGTERM during the final evaluation and save: preempted with the final checkpoint whole
- a failed metrics write: one error line, the pending checkpoint save completes
"""

import errno
import os
import signal

import pytest

from cnnx.errors import WorkdirError
from cnnx.train import build, loop
from cnnx.train import workdir as wd
from cnnx.train.checkpoint import Checkpointer
from tests.jax_cache import compilation_cache  # noqa: F401
from tests.train.tiny import tiny_config

pytestmark = pytest.mark.usefixtures("compilation_cache")


def _snapshot(workdir):
    """Every file and directory under a workdir with its size and modification time."""
    out = {}
    for dirpath, dirs, files in os.walk(workdir):
        for name in dirs + files:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def _metrics(workdir) -> dict[int, dict]:
    return {r["step"]: r for r in wd.read_lines(wd.metrics_path(str(workdir)))}


def _sigterm_at(n):
    def callback(step):
        if step == n:
            os.kill(os.getpid(), signal.SIGTERM)

    return callback


def _steps_on_disk(workdir):
    names = os.listdir(wd.checkpoints_dir(str(workdir)))
    return sorted(int(n) for n in names if n.isdigit()), [n for n in names if "tmp" in n]


def test_restart_with_another_config_is_refused_before_anything_is_touched(tmp_path):
    config = tiny_config(**{"ckpt.max_to_keep": 2})
    first = loop.train_and_evaluate(config, str(tmp_path), step_callback=_sigterm_at(6))
    assert first["status"] == "preempted" and _steps_on_disk(tmp_path)[0] == [4, 6]
    os.mkdir(tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp")  # as a killed save leaves
    before = _snapshot(tmp_path)

    other = tiny_config(**{"ckpt.max_to_keep": 2, "train.batch_size": 16})
    other.seed = 7
    with pytest.raises(WorkdirError) as e:
        loop.train_and_evaluate(other, str(tmp_path))
    text = str(e.value)
    assert "seed: 0 -> 7" in text and "train.batch_size: 32 -> 16" in text
    assert "another --workdir" in text and "--allow_config_change" in text
    # No config.json rewrite, no checkpoint deleted (max_to_keep), no leftover cleaned up.
    assert _snapshot(tmp_path) == before

    # On purpose: the run goes on from step 6 with the new values, and says so in a file.
    ran = []
    done = loop.train_and_evaluate(
        other, str(tmp_path), allow_config_change=True, step_callback=ran.append
    )
    assert done["status"] == "completed" and ran[0] == 7
    (change,) = wd.read_lines(str(tmp_path / "config_history.jsonl"))
    assert change["step"] == 6
    assert change["changes"] == {
        "seed": {"old": 0, "new": 7},
        "train.batch_size": {"old": 32, "new": 16},
    }
    assert wd.read_json(wd.config_path(str(tmp_path)))["train"]["batch_size"] == 16
    # From now on the new config is the run's identity: the original one is refused.
    with pytest.raises(WorkdirError, match="seed: 7 -> 0"):
        loop.train_and_evaluate(config, str(tmp_path))


def test_finished_workdir_keeps_its_results_and_segments_accumulate(tmp_path):
    config = tiny_config()
    first = loop.train_and_evaluate(config, str(tmp_path), step_callback=_sigterm_at(6))
    assert first["status"] == "preempted"
    ran = []
    second = loop.train_and_evaluate(config, str(tmp_path), step_callback=ran.append)
    assert second["status"] == "completed" and ran == list(range(7, 13))
    logged = _metrics(tmp_path)
    # Cumulative wall time: the resumed segment counts on from the first one's time at step 6.
    walls = [logged[s]["wall_time_s"] for s in range(1, 13)]
    assert walls == sorted(walls) and walls[5] > 0
    assert second["wall_time_s"] > logged[6]["wall_time_s"]
    on_disk = (tmp_path / "results.json").read_bytes()
    stat = os.stat(tmp_path / "results.json")

    again = loop.train_and_evaluate(config, str(tmp_path), step_callback=ran.append)
    assert again["already_finished"] and ran == list(range(7, 13))  # no step trained
    assert (tmp_path / "results.json").read_bytes() == on_disk
    assert os.stat(tmp_path / "results.json").st_mtime_ns == stat.st_mtime_ns
    assert again["train/loss"] == second["train/loss"] == logged[12]["train/loss"]


def test_sigterm_during_final_evaluation_keeps_the_handler_and_the_save(tmp_path, monkeypatch):
    """The final save runs in the background while the final evaluation starts; SIGTERM then
    must not kill the process (a test handler catches any that leaks to the default)."""
    config = tiny_config(**{"ckpt.asynchronous": True})
    real = build.evaluate_state

    def evaluate_and_get_sigterm(*args, **kwargs):
        # 12 steps are less than an epoch: the only evaluation is the final one.
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    leaked = []
    previous = signal.signal(signal.SIGTERM, lambda *_: leaked.append(1))
    monkeypatch.setattr(build, "evaluate_state", evaluate_and_get_sigterm)
    try:
        first = loop.train_and_evaluate(config, str(tmp_path))
    finally:
        signal.signal(signal.SIGTERM, previous)
        monkeypatch.undo()
    assert leaked == [] and first["status"] == "preempted" and first["step"] == 12
    assert _steps_on_disk(tmp_path) == ([4, 8, 12], [])  # the final save is whole
    assert Checkpointer(wd.checkpoints_dir(str(tmp_path))).latest_step() == 12

    # The restart trains nothing, evaluates step 12 and keeps the run's train metrics.
    ran = []
    second = loop.train_and_evaluate(config, str(tmp_path), step_callback=ran.append)
    assert ran == [] and second["status"] == "completed" and second["step"] == 12
    assert second["train/loss"] == _metrics(tmp_path)[12]["train/loss"]
    assert second["wall_time_s"] >= _metrics(tmp_path)[12]["wall_time_s"] > 0
    assert "eval/top1" in second
    assert not (tmp_path / "lock").exists()  # released after SIGTERM too


def _hold_commits(monkeypatch, seconds):
    """Delays each checkpoint's final rename: a save stays in flight for `seconds`."""
    import asyncio

    from orbax.checkpoint._src.path import atomicity

    commit = atomicity.on_commit_callback

    async def slow_commit(tmp_dir, **kwargs):
        await asyncio.sleep(seconds)
        return await commit(tmp_dir, **kwargs)

    monkeypatch.setattr(atomicity, "on_commit_callback", slow_commit)


def test_full_disk_on_the_metrics_file_is_one_error_and_the_pending_save_completes(
    tmp_path, monkeypatch
):
    """From step 5 train_metrics.jsonl is /dev/full (every write: ENOSPC) while the save of
    step 4 is still being written in the background."""
    config = tiny_config(**{"ckpt.asynchronous": True})
    metrics = tmp_path / "train_metrics.jsonl"

    def fill_the_disk(step):
        if step == 5:
            metrics.unlink()
            metrics.symlink_to("/dev/full")

    _hold_commits(monkeypatch, 2.0)
    with pytest.raises(WorkdirError) as e:
        loop.train_and_evaluate(config, str(tmp_path), step_callback=fill_the_disk)
    text = str(e.value)
    assert f"Writing {metrics} failed: No space left on device (errno 28)" in text
    assert "newest complete: step 4" in text and "free disk space" in text
    assert _steps_on_disk(tmp_path) == ([4], [])  # the save in flight completed
    assert not (tmp_path / "lock").exists()


def test_tensorboard_write_failure_is_one_error(tmp_path, monkeypatch):
    """TensorBoard's event writer reports a full disk as an OSError (from its flush)."""
    from cnnx.train import event_files

    write = event_files.EventWriter.write_scalars

    def write_scalars(self, step, scalars):
        if step >= 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        write(self, step, scalars)

    monkeypatch.setattr(event_files.EventWriter, "write_scalars", write_scalars)
    _hold_commits(monkeypatch, 2.0)
    with pytest.raises(WorkdirError) as e:
        loop.train_and_evaluate(tiny_config(**{"ckpt.asynchronous": True}), str(tmp_path))
    text = str(e.value)
    assert f"Writing the TensorBoard log in {tmp_path} failed" in text
    assert "No space left on device (errno 28)" in text and "newest complete: step 4" in text
    assert _steps_on_disk(tmp_path) == ([4], [])
    # The run resumes from step 4 once the disk has room.
    monkeypatch.undo()
    ran = []
    loop.train_and_evaluate(
        tiny_config(**{"ckpt.asynchronous": True}), str(tmp_path), step_callback=ran.append
    )
    assert ran[0] == 5


@pytest.mark.slow
def test_sigterm_during_final_evaluation_exits_143_then_resumes_without_training(
    tmp_path,
    compilation_cache,  # noqa: F811
):
    """train.py itself: SIGTERM while the final evaluation runs (the final save in flight)."""
    import subprocess
    import sys
    import time

    from tests import jax_cache

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    workdir, markers = tmp_path / "wd", tmp_path / "markers"
    markers.mkdir()
    env = {**os.environ, "PYTHONPATH": repo, **jax_cache.env(compilation_cache)}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.train.final_eval_worker",
            str(markers),
            "--config=tests/train/tiny.py",
            f"--workdir={workdir}",
            "--config.ckpt.asynchronous=True",
        ],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while not (markers / "evaluating").exists():
        assert p.poll() is None, p.stdout.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the handler runs while the evaluation is held
    (markers / "release").touch()
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 143, out[-3000:]
    assert "Preempted at step 12" in out
    assert _steps_on_disk(workdir) == ([4, 8, 12], [])
    assert not (workdir / "lock").exists()

    ran = []
    config = tiny_config(**{"ckpt.asynchronous": True})
    results = loop.train_and_evaluate(config, str(workdir), step_callback=ran.append)
    assert ran == [] and results["status"] == "completed" and results["step"] == 12
