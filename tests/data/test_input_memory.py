"""The host out of memory while the input is prepared (issue 33 item 7): an `OutOfMemory` that
says so and what to lower, on every path that used to blame something else: a file of a folder
(training: "a file that cannot be read"; evaluation: every example skipped as corrupt), a
TFDS-like tf.data source ("a file that cannot be read or decoded"), the in-memory pipeline
(its first batch: "the pp string cannot be applied"; a later one: a bare MemoryError).

The pp strings ask for a 10^7 x 10^7 image (4 x 10^14 bytes and more): beyond any address
space, so the allocation fails at once whatever the host's memory and overcommit policy."""

import numpy as np
import pytest

from cnnx.data import batched_ops, get_source
from cnnx.data.in_memory import prefetch
from cnnx.data.pipeline import EvalInput, TrainInput
from cnnx.errors import OutOfMemory
from tests.data.sections import data_section, per_example
from tests.data.test_folder import _ctx, _make, _train_labels_and_colours

HUGE_PAD = "random_crop(padding=5000000)"
HUGE_RESIZE = "resize_crop(crop_pct=0.0000008)"
OOM = (
    r"Out of host memory while preparing {}.*\((ResourceExhaustedError|MemoryError): (OOM when "
    r"allocating|Unable to allocate).*\); no file is at fault.*batch_size.*shuffle_buffer"
)


def test_a_folder_training_example_out_of_memory_is_no_corrupt_file(tmp_path):
    root = _make(tmp_path, {"ant": 3, "cow": 3})
    src = get_source(data_section(f"folder:{root}"))
    with pytest.raises(OutOfMemory, match=OOM.format(r".*\.png of image folder")):
        _train_labels_and_colours(src, pp=HUGE_PAD)
    assert not src.corrupt


@pytest.mark.parametrize("on_corrupt", ["skip", "error"])
def test_a_folder_evaluation_out_of_memory_is_not_skipped_as_corrupt(tmp_path, on_corrupt):
    # 'skip' masked out every image as corrupt, then "No readable example"; 'error' named
    # each file "corrupt or unreadable".
    root = _make(tmp_path, {"ant": 2, "cow": 2})
    src = get_source(data_section(f"folder:{root}", on_corrupt=on_corrupt))
    with pytest.raises(OutOfMemory, match=OOM.format(r".*\.png of image folder")):
        list(EvalInput(src, "all", HUGE_RESIZE, _ctx(), global_batch=4).iterate())
    assert not src.corrupt


def _digits_ctx():
    return _ctx(channels=1)


def test_a_tf_data_source_out_of_memory_blames_no_file():
    src = per_example(get_source(data_section("digits")))
    inp = TrainInput(src, "train[:8]", HUGE_PAD, _digits_ctx(), global_batch=4, shuffle_buffer=8)
    with pytest.raises(OutOfMemory, match=OOM.format("split 'train\\[:8\\]' of digits")):
        next(iter(inp.iterate(0)))
    ev = EvalInput(src, "train[:8]", HUGE_RESIZE, _digits_ctx(), global_batch=4)
    with pytest.raises(OutOfMemory, match=OOM.format("split 'train\\[:8\\]' of digits")):
        list(ev.iterate())


def test_an_in_memory_first_batch_out_of_memory_does_not_blame_the_pp_string(monkeypatch):
    # The batched resize asked for a 10^7 x 10^7 image (a real NumPy allocation failure).
    huge = lambda images, size: np.zeros((len(images), 10**7, 10**7, 1), np.float32)  # noqa: E731
    monkeypatch.setattr(batched_ops, "resize_to", huge)
    src = get_source(data_section("digits"))
    first = OOM.format("a first example with --config.data.train_pp='resize'")
    with pytest.raises(OutOfMemory, match=first):
        TrainInput(src, "train[:8]", "resize", _digits_ctx(), global_batch=4, shuffle_buffer=8)


def test_a_later_in_memory_batch_out_of_memory_is_named():
    def batch(i):
        if i == 2:
            np.zeros((10**7, 10**7, 10), np.float32)  # 4 x 10^15 bytes
        return {"i": i}

    got = prefetch(batch, range(4), workers=1, what="training batches of split 'train' of x")
    assert next(got) == {"i": 0}
    with pytest.raises(OutOfMemory, match=r"while preparing training batches of split 'train'"):
        list(got)
