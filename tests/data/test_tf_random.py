"""cnnx.data.tf_random against TensorFlow itself: tf.data's shuffle order and the stateless
random draws, bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

from cnnx.data import tf_random

# (examples, shuffle buffer, seed): buffers below, at and above... the split's size, seeds at
# the ends of the range an epoch seed takes ([0, 2**31 - 1)).
SHUFFLES = [
    (10, 3, 1),
    (17, 1, 3),
    (50, 7, 42),
    (100, 100, 5),
    (200, 64, 0),
    (512, 512, 2**30),
    (1000, 999, 2**31 - 2),
    (1438, 500, 7),
    (1438, 1438, 123456789),
]


@pytest.mark.parametrize("n,buffer,seed", SHUFFLES, ids=[f"{n}-{b}-{s}" for n, b, s in SHUFFLES])
def test_shuffle_order_is_tf_data_s(n, buffer, seed):
    ds = tf.data.Dataset.range(n).shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
    want = np.fromiter(ds.as_numpy_iterator(), np.int64)
    np.testing.assert_array_equal(tf_random.shuffle_order(n, buffer, seed), want)


def test_shuffle_order_with_a_tensor_seed_inside_a_dataset_function():
    # How the former batched pipeline shuffled: in flat_map, the epoch seed a tensor.
    seeds = [11, 0, 2**31 - 2]
    epochs = tf.data.Dataset.from_tensor_slices(tf.constant(seeds, tf.int64))
    ds = epochs.flat_map(
        lambda s: tf.data.Dataset.range(60).shuffle(20, seed=s, reshuffle_each_iteration=False)
    )
    want = np.fromiter(ds.as_numpy_iterator(), np.int64).reshape(len(seeds), 60)
    for seed, order in zip(seeds, want, strict=True):
        np.testing.assert_array_equal(tf_random.shuffle_order(60, 20, seed), order)


def _seeds(n: int) -> np.ndarray:
    """Stateless seeds as the pipelines make them (epoch seed, example index), and any int64."""
    rng = np.random.RandomState(0)
    pipeline = np.stack([rng.randint(0, 2**31 - 1, n), rng.randint(0, 5000, n)], 1)
    wide = rng.randint(-(2**63), 2**63 - 1, (n, 2), dtype=np.int64)
    return np.concatenate([pipeline.astype(np.int64), wide, [[0, 0], [-1, -1]]])


@pytest.mark.parametrize("salt", [0, 2, 3, 10, 2**31 - 1])
def test_fold_in(salt):
    seeds = _seeds(20)
    want = [tf.random.experimental.stateless_fold_in(tf.constant(s), salt).numpy() for s in seeds]
    got = tf_random.fold_in(seeds, salt)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.stack(want))


@pytest.mark.parametrize("count", [1, 3, 4, 9])
def test_uniform_float(count):
    # int64 seeds, and the int32 seeds fold_in makes (a negative first word is sign-extended).
    for seeds in (_seeds(20), tf_random.fold_in(_seeds(20), 3)):
        want = [tf.random.stateless_uniform([count], tf.constant(s), 0, 1.0).numpy() for s in seeds]
        got = tf_random.uniform_float(seeds, count)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.stack(want))


@pytest.mark.parametrize("maxval", [7, 2**31 - 1])
def test_uniform_int(maxval):
    for seeds in (_seeds(20), tf_random.fold_in(_seeds(20), 2)):
        want = [
            tf.random.stateless_uniform([3], tf.constant(s), maxval=maxval, dtype=tf.int32).numpy()
            for s in seeds
        ]
        got = tf_random.uniform_int(seeds, 3, maxval)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, np.stack(want))


# Random123's known-answer vectors for Philox4x32-10 (kat_vectors): (counter, key, output).
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def test_philox_known_answers():
    counters, keys, outputs = (np.array(x, np.uint32) for x in zip(*PHILOX_KAT, strict=True))
    np.testing.assert_array_equal(tf_random.philox(counters, keys), outputs)
