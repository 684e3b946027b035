"""Test helpers: a config `data` section for `get_source`, TFDS's mock data, in-memory
sources read through tf.data one example at a time, and batch-for-batch comparison."""

import contextlib
import dataclasses
from unittest import mock

import numpy as np
import tensorflow_datasets as tfds

from cnnx.config_schema import base_config


def data_section(source: str, **overrides):
    """The schema's `data` section (its defaults) with `source` and `overrides` set."""
    data = base_config().data
    data.source = source
    data.update(overrides)
    return data


@contextlib.contextmanager
def mock_tfds(num_examples: int):
    """`tfds.testing.mock_data`, with every dataset counted as prepared (the mock reads
    random examples without files, which `tfds_source` would otherwise ask to build)."""
    with (
        tfds.testing.mock_data(num_examples=num_examples),
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True),
    ):
        yield


def per_example(source):
    """The same in-memory source, read through tf.data's per-example pipeline (the reference
    the batched NumPy path must equal)."""
    copy = dataclasses.replace(source)
    copy.in_memory = False
    return copy


def assert_same_batches(got, want) -> None:
    """The same number of batches, each with the same keys, dtypes, shapes and values."""
    got, want = list(got), list(want)
    assert len(got) == len(want)
    for step, (a, b) in enumerate(zip(got, want, strict=True)):
        assert set(a) == set(b)
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (step, k)
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"batch {step}, {k}")
