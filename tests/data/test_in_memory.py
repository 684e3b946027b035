"""The in-memory NumPy pipelines: whole epochs and passes equal to tf.data's per-example path,
exact resume, prefetching, and runs without TensorFlow (a subprocess in which importing it
fails)."""

import dataclasses
import itertools
import pathlib
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from cnnx.data import EvalInput, PPContext, TrainInput, get_source
from cnnx.data.in_memory import prefetch
from tests.data.sections import assert_same_batches, data_section, per_example

ROOT = pathlib.Path(__file__).resolve().parents[2]
# configs/default.py: LeNet-5 on the digits at 32 px, grey mean / std 0.5, batch 64.
DIGITS = PPContext(image_size=32, mean=(0.5,), std=(0.5,), channels=1)
DIGITS_TRAIN = dict(
    split="train", pp="random_crop(padding=2)|normalize", ctx=DIGITS, global_batch=64
)
RGB = PPContext(image_size=24, channels=3)


def _take(it, n: int) -> list[dict]:
    return [next(it) for _ in range(n)]


def test_digits_training_epochs_are_tf_data_s_and_resume_mid_epoch():
    src = get_source(data_section("digits"))
    args = dict(**DIGITS_TRAIN, seed=0, shuffle_buffer=2048)  # the default config's
    fast, slow = TrainInput(src, **args), TrainInput(per_example(src), **args)
    assert fast.batched and not slow.batched
    two_epochs = 2 * fast.steps_per_epoch
    run = _take(fast.iterate(0), two_epochs)
    assert_same_batches(run, _take(slow.iterate(0), two_epochs))
    mid = fast.steps_per_epoch + 7
    assert_same_batches(_take(TrainInput(src, **args).iterate(mid), 3), run[mid : mid + 3])


@pytest.mark.parametrize(
    "pp,size",
    [("random_crop(padding=4)|flip|normalize", 24), ("resize|flip|normalize", 16)],
    ids=["crop", "downsample"],
)
def test_synthetic_training_epoch_is_tf_data_s(pp, size):
    src = get_source(data_section("synthetic", num_classes=10, image_size=24))
    ctx = dataclasses.replace(RGB, image_size=size)
    args = dict(split="train", pp=pp, ctx=ctx, global_batch=32, seed=7, shuffle_buffer=100)
    fast, slow = TrainInput(src, **args), TrainInput(per_example(src), **args)
    assert fast.batched and not slow.batched
    n = fast.steps_per_epoch + 1  # and the first batch of the next epoch
    assert_same_batches(_take(fast.iterate(0), n), _take(slow.iterate(0), n))


@pytest.mark.parametrize("processes", [1, 3])
def test_evaluation_passes_are_tf_data_s(processes):
    cases = [
        ("digits", "test", "resize|normalize", DIGITS, 120),
        ("synthetic", "test", "resize_crop|normalize", RGB, 48),
    ]
    for name, split, pp, ctx, batch in cases:
        src = get_source(data_section(name), image_size=30, num_classes=10)
        for i in range(processes):
            args = dict(process_index=i, process_count=processes)
            fast = EvalInput(src, split, pp, ctx, batch, **args)
            slow = EvalInput(per_example(src), split, pp, ctx, batch, **args)
            assert fast.batched and not slow.batched
            assert_same_batches(list(fast.iterate()), list(slow.iterate()))


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cnnx-in-memory-input")]


def test_prefetch_keeps_order_raises_errors_and_stops_its_threads():
    def slow_square(x):  # later tasks often finish first
        time.sleep(0.01 * (3 - x % 4))
        if x == 7:
            raise ValueError("broken batch")
        return x * x

    it = prefetch(slow_square, range(10), workers=3)
    assert [next(it) for _ in range(7)] == [x * x for x in range(7)]
    with pytest.raises(ValueError, match="broken batch"):
        next(it)
    endless = prefetch(lambda x: x, itertools.count(), workers=3)
    assert [next(endless) for _ in range(20)] == list(range(20))
    assert _workers()
    endless.close()
    assert not _workers()


# Run in a subprocess: digits and synthetic pipelines, and what the TF-only parts say.
WITHOUT_TF = textwrap.dedent(
    """
    import sys
    import numpy as np
    from cnnx.data import EvalInput, PPContext, TrainInput, get_source
    from cnnx.errors import CnnxError

    ctx = PPContext(image_size=32, mean=(0.5,), std=(0.5,), channels=1)
    src = get_source({"source": "digits"})
    train = TrainInput(src, "train", "random_crop(padding=2)|normalize", ctx, 64, seed=0,
                       shuffle_buffer=2048)
    batches = train.iterate(train.steps_per_epoch - 1)  # across an epoch's end
    first, second = next(batches), next(batches)
    ev = EvalInput(src, "test", "resize|normalize", ctx, 128)
    assert sum(b["mask"].sum() for b in ev.iterate()) == 359
    syn = get_source({"source": "synthetic"}, image_size=16, num_classes=10)
    rgb = PPContext(image_size=16, channels=3)
    assert next(TrainInput(syn, "train", "flip|normalize", rgb, 32).iterate())["image"].shape \\
        == (32, 16, 16, 3)
    np.savez(sys.argv[1], **{f"first_{k}": v for k, v in first.items()},
             **{f"second_{k}": v for k, v in second.items()})
    for make in (
        lambda: get_source({"source": "tfds:mnist", "data_dir": None, "download": False}),
        lambda: get_source({"source": "folder:/tmp", "on_corrupt": "error"}),
        lambda: TrainInput(src, "train", "inception_crop|normalize", ctx, 64),
    ):
        try:
            make()
        except CnnxError as e:
            print("error:", e)
    print("imported:", sorted(m for m in ("tensorflow", "jax") if m in sys.modules))
    """
)


def test_digits_and_synthetic_run_without_tensorflow(tmp_path):
    blocked = tmp_path / "blocked"
    for name in ("tensorflow", "tensorflow_datasets"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError('{name} is blocked for this test')\n"
        )
    out = tmp_path / "batches.npz"
    env = {"PYTHONPATH": f"{blocked}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TF, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    errors = [x for x in done.stdout.splitlines() if x.startswith("error: ")]
    assert len(errors) == 3, done.stdout
    tfds, folder, op = errors
    assert "tfds:mnist" in tfds and "pip install tensorflow-cpu tensorflow-datasets" in tfds
    assert "folder:/tmp" in folder and "pip install tensorflow-cpu" in folder
    assert "inception_crop" in op and "pip install tensorflow-cpu" in op
    assert "imported: []" in done.stdout  # neither TensorFlow nor JAX
    # The same batches as tf.data's per-example path gives, here where TensorFlow is.
    src = get_source(data_section("digits"))
    slow = TrainInput(per_example(src), **DIGITS_TRAIN, seed=0, shuffle_buffer=2048)
    want = _take(slow.iterate(slow.steps_per_epoch - 1), 2)
    saved = np.load(out)
    for name, batch in zip(("first", "second"), want, strict=True):
        for k, v in batch.items():
            np.testing.assert_array_equal(saved[f"{name}_{k}"], v, err_msg=f"{name} {k}")


def test_in_memory_pipelines_import_no_tensorflow_where_it_is_installed():
    code = textwrap.dedent(
        """
        import sys
        from cnnx.data import EvalInput, PPContext, TrainInput, get_source
        ctx = PPContext(image_size=32, mean=(0.5,), std=(0.5,), channels=1)
        src = get_source({"source": "digits"})
        next(TrainInput(src, "train", "random_crop(padding=2)|normalize", ctx, 64).iterate())
        next(EvalInput(src, "test", "resize_crop|normalize", ctx, 64).iterate())
        assert "tensorflow" not in sys.modules and "jax" not in sys.modules, "imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)
