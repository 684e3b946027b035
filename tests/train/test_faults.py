"""The fault matrix: every failure a long run meets ends in a clear outcome, and the workdir
stays resumable. One test (or pair) per row; the README's "Faults" table lists the outcomes.

- SIGTERM during a step: test_loop.test_sigterm_then_resume_equals_uninterrupted
- SIGTERM during an async save, kill -9 during a save: test_sigterm_and_kill_during_saves...
- NaN / Inf loss: test_nonfinite_loss_stops_naming_the_step, test_nonfinite_skip_...
- corrupt or truncated image: test_corrupt_images_skipped_and_counted_or_an_error
- unfit resolution, batch, eval batch: test_bad_config_fails_before_compiling
- checkpoint of another model or head: test_checkpoint_of_another_model_changes_nothing
- full disk while saving: test_full_disk_during_async_save
"""

import functools
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx.checkpoint_eval import restore_state
from cnnx.errors import CheckpointError, ConfigError, DataError, TrainingDiverged, WorkdirError
from cnnx.models import get_spec
from cnnx.train import build, loop, steps
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import check_input_size, setup
from tests import jax_cache
from tests.jax_cache import compilation_cache  # noqa: F401
from tests.train.tiny import tiny_config

# The tiny runs here compile the same programs again and again: cache them (see jax_cache).
pytestmark = pytest.mark.usefixtures("compilation_cache")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _metrics(workdir) -> dict[int, dict]:
    """train_metrics.jsonl by step."""
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return {m["step"]: m for m in map(json.loads, f)}


class _PoisonedInput:
    """A TrainInput whose batches at the given (1-based) steps carry a NaN pixel."""

    def __init__(self, inner, bad_steps):
        self.inner, self.bad = inner, set(bad_steps)
        self.steps_per_epoch = inner.steps_per_epoch

    def iterate(self, start_step):
        for step, batch in enumerate(self.inner.iterate(start_step), start=start_step + 1):
            if step in self.bad:
                batch = {**batch, "image": batch["image"].copy()}
                batch["image"][0, 0, 0, 0] = np.nan
            yield batch


@pytest.fixture
def poison(monkeypatch):
    def install(*bad_steps):
        real = build.make_train_input
        monkeypatch.setattr(build, "make_train_input", lambda e: _PoisonedInput(real(e), bad_steps))

    return install


# --- NaN / Inf ---------------------------------------------------------------------------


def test_nonfinite_loss_stops_naming_the_step(tmp_path, poison):
    poison(6)
    with pytest.raises(TrainingDiverged, match=r"at step 6 \(metrics of that step: .*grad_norm"):
        loop.train_and_evaluate(tiny_config(), str(tmp_path))
    # The checkpoint of step 4 is the newest and is finite; nothing after the NaN was saved.
    assert Checkpointer(str(tmp_path / "checkpoints")).latest_step() == 4
    _, state = restore_state(tiny_config(), str(tmp_path))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    assert max(_metrics(tmp_path)) == 5  # logs stop at the last finite step


def test_nonfinite_skip_discards_the_update_and_goes_on(tmp_path, poison):
    """Also the run that checks profiling (one run less): a trace of step 2 is written and
    every log line has the step-time breakdown."""
    poison(6, 7)
    config = tiny_config(**{"train.on_nonfinite": "skip", "train.profile_steps": (1, 1)})
    results = loop.train_and_evaluate(config, str(tmp_path))
    assert results["status"] == "completed" and results["step"] == 12
    assert results["skipped_steps"] == 2
    logged = _metrics(tmp_path)
    assert logged[6]["train/skipped"] == 1 and "train/loss" not in logged[6]
    assert logged[8]["train/skipped"] == 0 and np.isfinite(logged[8]["train/loss"])
    assert np.isfinite(results["eval/loss"])

    traces = list((tmp_path / "profile" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    for m in logged.values():
        assert m["train/step_ms"] >= m["train/data_wait_ms"] >= 0
        assert m["train/compute_ms"] == pytest.approx(m["train/step_ms"] - m["train/data_wait_ms"])

    # Inside the step: a non-finite batch leaves every state leaf but the counter untouched.
    exp = setup(tiny_config())
    tx = build.make_tx(exp.config, lambda _: 0.1)
    state, _ = build.init_state(exp, tx, jax.random.PRNGKey(0))
    batch = {"image": jnp.full((8, 32, 32, 1), jnp.nan), "label": jnp.zeros(8, jnp.int32)}
    step = functools.partial(
        steps.train_step,
        rng=jax.random.PRNGKey(1),
        num_classes=10,
        schedule=lambda _: 0.1,
        options=steps.StepOptions.default(skip_nonfinite=True),
    )
    fn = jax.jit(step)
    new, metrics = fn(state, batch)
    assert float(metrics["skipped"]) == 1.0 and int(new.step) == int(state.step) + 1
    for a, b in zip(
        jax.tree.leaves((state.params, state.opt_state)),
        jax.tree.leaves((new.params, new.opt_state)),
    ):
        np.testing.assert_array_equal(a, b)


# --- Corrupt images ----------------------------------------------------------------------


def _image_bytes(fmt: str, size=(12, 12)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (*size, 3), np.uint8)).save(buf, fmt)
    return buf.getvalue()


def _folder(root):
    for i, cls in enumerate(("a", "b")):
        os.makedirs(root / cls)
        for j in range(17):
            (root / cls / f"{j}.png").write_bytes(_image_bytes("PNG", (20 + i, 20 + j)))
    jpg = _image_bytes("JPEG")
    (root / "a" / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "b" / "notes.jpg").write_text("not an image")


def test_corrupt_images_skipped_and_counted_or_an_error(tmp_path, caplog):
    root = tmp_path / "images"
    _folder(root)
    bad = sorted([str(root / "a" / "truncated.jpg"), str(root / "b" / "notes.jpg")])
    overrides = {
        "data.source": f"folder:{root}",
        "data.train_split": "all",
        "data.eval_split": "all",
        "data.train_pp": "resize|normalize",
        "data.cache": False,
        "ckpt.every_steps": 100,
    }
    caplog.set_level("WARNING")
    results = loop.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "skip"))
    assert results["status"] == "completed"
    assert results["corrupt_files"] == bad
    assert results["eval/examples"] == 34  # the 36 files less the two corrupt ones
    for name in bad:
        assert any(
            name in r.getMessage() and "Skipping corrupt" in r.getMessage() for r in caplog.records
        ), name

    # on_corrupt='error': the first batch that meets one stops the run, naming the file(s).
    config = tiny_config(**overrides, **{"data.on_corrupt": "error"})
    train_input = build.make_train_input(setup(config))
    with pytest.raises(DataError, match=r"(truncated|notes)\.jpg.*on_corrupt=skip"):
        for _ in train_input.iterate(0):
            pass


# --- Configs that cannot work: a clear error before any compilation -----------------------

BAD_CONFIGS = {
    "resolution_below_model_minimum": (
        {"model.name": "inception_v3", "data.image_size": 64},
        r"inception_v3 needs inputs of at least 75 px",
    ),
    "batch_not_divisible_over_devices": ({"train.batch_size": 12}, r"multiple of 8"),
    "eval_batch_not_divisible": ({"eval.batch_size": 12}, r"eval.batch_size=12.*multiple of 8"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fails_before_compiling(case, tmp_path, monkeypatch):
    overrides, message = BAD_CONFIGS[case]

    def compiled(*args, **kwargs):
        raise AssertionError("the state was initialised (compiled) before the config error")

    monkeypatch.setattr(build, "init_state", compiled)
    with pytest.raises(ConfigError, match=message):
        loop.train_and_evaluate(tiny_config(**overrides), str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")


def test_input_size_a_model_cannot_trace_is_a_config_error():
    class NeedsForty(nn.Module):
        @nn.compact
        def __call__(self, x, *, train):
            assert x.shape[1] >= 40, "too small for the stem"
            return nn.Dense(10)(x.mean(axis=(1, 2)))

    with pytest.raises(ConfigError, match=r"lenet5 cannot take 36x36 inputs.*too small"):
        check_input_size(get_spec("lenet5"), NeedsForty(), 1, 36)
    check_input_size(get_spec("lenet5"), NeedsForty(), 1, 48)  # fits: no error


def _snapshot(workdir):
    """Every file under a workdir with its size and modification time."""
    out = {}
    for dirpath, _, files in os.walk(workdir):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            out[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return out


def test_checkpoint_of_another_model_changes_nothing(tmp_path):
    wd = str(tmp_path)
    config = tiny_config()
    exp = setup(config)
    state, _ = build.init_state(exp, build.make_tx(config, lambda _: 0.1), jax.random.PRNGKey(0))
    ckpt = Checkpointer(os.path.join(wd, "checkpoints"), asynchronous=False)
    ckpt.save(4, state)
    ckpt.close()
    (tmp_path / "config.json").write_text(config.to_json_best_effort())
    before = _snapshot(wd)
    for other in ({"data.source": "digits:parity"}, {"model.width_mult": 2.0}):
        # config.json tells another run apart first (see test_run_identity); allowed on
        # purpose, the checkpoints still must fit.
        with pytest.raises(WorkdirError, match="holds another run"):
            loop.train_and_evaluate(tiny_config(**other), wd)
        with pytest.raises(CheckpointError) as e:
            loop.train_and_evaluate(tiny_config(**other), wd, allow_config_change=True)
        text = str(e.value)
        assert "does not fit this model" in text and "Nothing was changed" in text
        assert "'lenet5' on 'digits'" in text and f"--config.init.checkpoint={wd}" in text
        assert _snapshot(wd) == before  # no file written, replaced or removed


# --- Full disk ---------------------------------------------------------------------------


def test_full_disk_during_async_save(tmp_path, monkeypatch):
    """From the save of step 8 on, files may not grow past 64 kB (RLIMIT_FSIZE: the kernel
    fails the writes as on a full disk); that asynchronous save fails in the background and
    is reported when the run waits for it, at the next save."""
    wd = str(tmp_path)
    config = tiny_config(**{"ckpt.asynchronous": True})
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    class FillsTheDisk(Checkpointer):
        def save(self, step, state, *, wait=False):
            if step == 8:
                self.wait()  # step 4 is complete on a healthy disk
                resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
            super().save(step, state, wait=wait)

    monkeypatch.setattr(loop, "Checkpointer", FillsTheDisk)
    try:
        with pytest.raises(CheckpointError) as e:
            loop.train_and_evaluate(config, wd)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
        monkeypatch.undo()
    text = str(e.value)
    assert "Saving checkpoint 8" in text and "(errno 27)" in text  # EFBIG
    assert "newest complete: step 4" in text and "resume" in text
    # The previous checkpoint is the newest and restores (test_sigterm_and_kill_... shows a
    # new start resuming from it); the failed save left only a temporary directory, which
    # does not count as a checkpoint (and which the next training run deletes).
    assert Checkpointer(os.path.join(wd, "checkpoints")).latest_step() == 4
    _, state = restore_state(config, wd)
    assert int(state.step) == 4
    names = os.listdir(os.path.join(wd, "checkpoints"))
    assert [n for n in names if n.isdigit()] == ["4"] and "8.orbax-checkpoint-tmp" in names


# --- SIGTERM during an async save, kill -9 during a save: black box, train.py itself -------

# tests/train/tiny.py from the command line (12 steps, checkpoints every 4), saving in the
# background: the same programs as the in-process runs here, so the compilation cache serves.
CLI_OVERRIDES = {"ckpt.asynchronous": True}


def _spawn(marker_dir, workdir, cache_dir):
    env = {**os.environ, "PYTHONPATH": REPO, **jax_cache.env(cache_dir)}
    args = [f"--config.{k}={v}" for k, v in CLI_OVERRIDES.items()]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.train.fault_worker",
            str(marker_dir),
            "--config=tests/train/tiny.py",
            f"--workdir={workdir}",
            *args,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path, proc, timeout=300):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f"worker exited first:\n{proc.stdout.read()[-3000:]}")
        assert time.time() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)
    with open(path) as f:
        return int(f.read())


def _steps_on_disk(checkpoints):
    names = os.listdir(checkpoints)
    return sorted(int(n) for n in names if n.isdigit()), [n for n in names if "tmp" in n]


@pytest.mark.slow
def test_sigterm_and_kill_during_saves_then_resume(tmp_path, compilation_cache):  # noqa: F811
    wd, ckpts = tmp_path / "wd", tmp_path / "wd" / "checkpoints"

    # 1. SIGTERM while the save of step 4 is in flight: the run saves and exits cleanly (143).
    m1 = tmp_path / "m1"
    m1.mkdir()
    p = _spawn(m1, wd, compilation_cache)
    assert _wait_for(m1 / "holding", p) == 4
    p.send_signal(signal.SIGTERM)
    (m1 / "release").touch()
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 143, out[-3000:]
    preempted = int(out.split("Preempted at step ")[1].split(";")[0])
    assert 5 <= preempted <= 9  # within a step of the signal; the save of 4 finished first
    done, partial = _steps_on_disk(ckpts)
    assert done[0] == 4 and done[-1] == preempted and partial == []

    # 2. kill -9 while the next save is in flight: its temporary directory is never taken.
    m2 = tmp_path / "m2"
    m2.mkdir()
    p = _spawn(m2, wd, compilation_cache)
    held = _wait_for(m2 / "holding", p)
    p.kill()
    p.communicate(timeout=60)
    assert held > preempted
    assert _steps_on_disk(ckpts) == (done, [f"{held}.orbax-checkpoint-tmp"])

    # 3. The next start (the same config, here in-process) resumes from the last complete
    # checkpoint, removes the killed save's leftovers and finishes the run.
    config = tiny_config(**CLI_OVERRIDES)
    ran = []
    results = loop.train_and_evaluate(config, str(wd), step_callback=ran.append)
    assert results["status"] == "completed" and ran[0] == preempted + 1
    assert _steps_on_disk(ckpts)[1] == []

    # Same losses and weights as one uninterrupted run (same devices and config).
    straight = str(tmp_path / "straight")
    loop.train_and_evaluate(config, straight)
    resumed, direct = _metrics(wd), _metrics(straight)
    assert sorted(resumed) == list(range(1, 13))
    assert [resumed[s]["train/loss"] for s in resumed] == [direct[s]["train/loss"] for s in direct]
    _, s1 = restore_state(config, straight)
    _, s2 = restore_state(config, str(wd))
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
