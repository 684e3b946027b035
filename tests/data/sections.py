"""Test helpers: a config `data` section for `get_source`, and TFDS's mock data."""

import contextlib
from unittest import mock

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
