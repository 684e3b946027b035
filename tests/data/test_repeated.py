"""Repeated augmentation (issue 31, item 5): each image k times per batch, in k slices of the
batch (different devices), each copy augmented differently; epochs keep their length; the
NumPy and tf.data paths give the same batches; resume and processes as without it."""

import numpy as np
import pytest

from cnnx.config_schema import base_config, validate
from cnnx.data import PPContext, TrainInput, get_source, repeated
from cnnx.errors import ConfigError
from tests.data.sections import assert_same_batches, data_section, mock_tfds, per_example

GRAY = PPContext(image_size=32, mean=(0.5,), std=(0.5,), channels=1)
K, BATCH = 4, 32


def test_stream_and_spread():
    order = np.array([5, 2, 9, 0, 7, 1, 3])
    s = repeated.stream(order, 3, 10)
    # ⌈7/3⌉ = 3 images, 3 copies each (copy j: + 10·j), cut to 7.
    np.testing.assert_array_equal(s, [5, 15, 25, 2, 12, 22, 9])
    assert repeated.stream(order, 1, 10) is order
    # Row j·(B/k) + q takes stream position q·k + j.
    np.testing.assert_array_equal(repeated.spread(2, 6), [0, 2, 4, 1, 3, 5])
    np.testing.assert_array_equal(repeated.spread(1, 4), [0, 1, 2, 3])
    # A batch starting mid-group (k = 3, B = 4, positions 4..7 are copies 1, 2, 0, 1).
    np.testing.assert_array_equal(repeated.spread(3, 4, 4), [2, 0, 3, 1])


def _train(source=None, **kw):
    args = dict(
        source=source or get_source(data_section("digits")),
        split="train",
        pp="random_crop(padding=2)|flip|normalize",
        ctx=GRAY,
        global_batch=BATCH,
        seed=3,
        repeats=K,
    )
    return TrainInput(**{**args, **kw})


def _take(it, n):
    return [next(it) for _ in range(n)]


def _check_groups(batch, k=K):
    per = len(batch["label"]) // k
    index = batch["index"].reshape(k, per)
    assert np.all(index == index[0]) and len(set(index[0])) == per  # k copies of per images
    assert np.all(batch["label"].reshape(k, per) == batch["label"][:per])
    images = batch["image"].reshape(k, per, -1)
    differ = [not np.array_equal(images[0, q], images[1, q]) for q in range(per)]
    assert np.mean(differ) > 0.7  # copies augmented apart (crop offsets and flips draw)


def test_batches_hold_k_copies_and_paths_agree_and_resume():
    fast = _train()
    assert fast.batched and fast.steps_per_epoch == _train(repeats=1).steps_per_epoch
    n = fast.steps_per_epoch + 2  # across an epoch boundary
    run = _take(fast.iterate(0), n)
    for b in run:
        _check_groups(b)
    # An epoch sees about n/k images: the first ⌈n/k⌉ of its order.
    seen = np.concatenate([b["index"] for b in run[: fast.steps_per_epoch]])
    assert len(set(seen)) <= -(-fast.examples_per_reader // K)
    slow = _train(per_example(get_source(data_section("digits"))))
    assert not slow.batched
    assert_same_batches(run[:3], _take(slow.iterate(0), 3))
    mid = fast.steps_per_epoch + 1
    assert_same_batches(_take(_train().iterate(mid), 1), run[mid : mid + 1])
    parts = [next(_train(process_index=i, process_count=2).iterate(5)) for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), run[5]["image"])


def test_tfds_read_per_process_repeats_within_its_batches():
    with mock_tfds(num_examples=48):
        src = get_source(data_section("tfds:mnist"))
        ctx = PPContext(image_size=16, mean=(0.5,), std=(0.5,), channels=1)
        t = TrainInput(src, "train", "inception_crop|normalize", ctx, 16, repeats=2)
        a, b = _take(t.iterate(0), 2)
        for batch in (a, b):
            _check_groups(batch, 2)
        resumed = next(
            TrainInput(src, "train", "inception_crop|normalize", ctx, 16, repeats=2).iterate(1)
        )
        np.testing.assert_array_equal(resumed["image"], b["image"])


def test_batches_need_not_hold_whole_groups():
    """k = 3 and batches of 32 (RSB's 3 and 2048): groups straddle batches, as in DeiT's
    sampler; both paths and resume still agree."""
    fast = _train(repeats=3)
    run = _take(fast.iterate(0), 4)
    stream = np.concatenate([np.sort(b["index"]) for b in run])
    counts = np.bincount(stream)
    assert counts.max() == 3 and np.sum(counts == 3) >= len(stream) // 3 - 8
    slow = _train(per_example(get_source(data_section("digits"))), repeats=3)
    assert_same_batches(run, _take(slow.iterate(0), 4))
    assert_same_batches(_take(_train(repeats=3).iterate(2), 2), run[2:])
    with pytest.raises(ConfigError, match="repeated_augmentation=0 must be >= 1"):
        _train(repeats=0)
    c = base_config()
    c.data.repeated_augmentation = 0
    with pytest.raises(ConfigError, match="repeated_augmentation=0 must be an integer >= 1"):
        validate(c)
