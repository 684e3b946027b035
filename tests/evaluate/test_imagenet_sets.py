"""The ImageNet test sets as evaluators (configs/common.py `imagenet_test_sets`): each a TFDS
dataset of the installed catalog, read through TFDS's own mock data (the real sets cannot be
downloaded here) and evaluated by the loop's evaluators with its label rule (issue 28 item 2).
The rules themselves are checked by hand in test_label_rules.py."""

import jax
import numpy as np
import pytest

from cnnx.config_schema import base_config
from cnnx.evaluate.entries import resolve
from configs.common import IMAGENET_TEST_SETS, imagenet_test_sets
from tests.data.sections import data_section, mock_tfds

N = 6  # mock examples per split


def _config(**kw):
    c = base_config()
    c.model.name = "lenet5"
    c.data.source = "tfds:imagenet_v2/matched-frequency"  # the run's own (mock) data
    c.data.train_split = c.data.eval_split = "test"
    c.data.image_size = 32
    c.data.mean, c.data.std = (0.5,), (0.5,)  # LeNet-5 reads grey images
    c.eval.batch_size = 8
    return imagenet_test_sets(c, **kw)


def test_one_call_adds_every_set_with_its_rule():
    names = [e.name for e in resolve(_config())]
    assert names == ["eval", *sorted(IMAGENET_TEST_SETS)]
    assert len(IMAGENET_TEST_SETS) == 7
    by_name = {e.name: e for e in resolve(_config(every_epochs=2.0))}
    assert by_name["real"].options["labels"] == "real"
    assert by_name["imagenet_a"].options["class_subset"] == "imagenet_a"
    assert by_name["imagenet_r"].options["class_subset"] == "imagenet_r"
    assert by_name["v2_top"].data["source"] == "tfds:imagenet_v2/topimages"
    assert by_name["sketch"].every(100) == 200
    # Without a cadence they run after the last step only.
    assert {e.every(100) for e in resolve(_config()) if e.name != "eval"} == {0}
    only = resolve(imagenet_test_sets(base_config(), names=["real"]))
    assert [e.name for e in only] == ["eval", "real"]


def test_every_set_is_in_the_installed_tfds_catalog_with_its_split():
    from cnnx.data import get_source

    with mock_tfds(num_examples=N):
        for name, (tfds_name, split, options) in IMAGENET_TEST_SETS.items():
            source = get_source(data_section(f"tfds:{tfds_name}"))
            assert source.num_classes == 1000, name
            assert source.label_sets == (options.get("labels") == "real"), name
            assert source.num_examples(split) == N, name


def test_real_without_its_manual_download_says_what_and_where(tmp_path):
    from cnnx.data import get_source
    from cnnx.errors import DataError

    with pytest.raises(DataError) as e:
        get_source(data_section("tfds:imagenet2012_real", data_dir=str(tmp_path)))
    text = str(e.value)
    assert "manual download" in text and "ILSVRC2012_img_val.tar" in text
    assert str(tmp_path / "downloads" / "manual") in text


# Hand-made examples for the evaluation test: ReaL label sets (two of them empty) and labels
# of A and R inside their 200-class subsets.
REAL_SETS = [[1], [2, 7], [], [3], [], [10, 11]]


def _hand_made(self, split, **kwargs):
    """`DatasetBuilder._as_dataset` under `tfds.testing.mock_data`: N encoded images with the
    labels above (encoded: cnnx reads TFDS images undecoded)."""
    import tensorflow as tf

    from cnnx.evaluate.imagenet_subsets import CLASS_SUBSETS

    del split, kwargs
    images = [tf.io.encode_jpeg(np.full((40, 40, 3), 30 * i, np.uint8)) for i in range(N)]
    if self.name == "imagenet2012_real":
        rows = [
            {"image": im, "real_label": np.asarray(s, np.int64)} for im, s in zip(images, REAL_SETS)
        ]
        spec = tf.TensorSpec([None], tf.int64)
    else:
        subset = CLASS_SUBSETS.get(self.name, range(0, 1000, 7))
        rows = [{"image": im, "label": np.int64(subset[5 * i])} for i, im in enumerate(images)]
        spec = tf.TensorSpec([], tf.int64)
    key = "real_label" if self.name == "imagenet2012_real" else "label"
    return tf.data.Dataset.from_generator(
        lambda: iter(rows),
        output_signature={"image": tf.TensorSpec([], tf.string), key: spec},
    )


@pytest.mark.slow
def test_each_set_evaluates_through_the_loops_evaluators():
    """A 1000-class LeNet, untrained, on hand-made examples of every set, read through TFDS's
    mock: each evaluator counts its images (ReaL: those with a label set) and reports."""
    from unittest import mock

    import optax
    import tensorflow_datasets as tfds

    from cnnx.train.build import make_evaluators
    from cnnx.train.experiment import setup
    from cnnx.train.state import create_train_state

    config = _config()
    config.evals.real.options.per_class = True
    with (
        tfds.testing.mock_data(as_dataset_fn=_hand_made),
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True),
    ):
        exp = setup(config)
        rng = jax.random.PRNGKey(0)
        state = create_train_state(exp.model, optax.sgd(0.1), rng, exp.input_shape)
        evaluators = make_evaluators(exp)
        results, arrays = {}, {}
        for ev in evaluators:
            results.update(ev((state.eval_variables(),)))
            arrays[ev.name] = ev.arrays
    assert [ev.name for ev in evaluators] == ["eval", *sorted(IMAGENET_TEST_SETS)]
    classes = {ev.name: ev.num_classes for ev in evaluators}
    assert classes["imagenet_a"] == classes["imagenet_r"] == 200 and classes["sketch"] == 1000
    for name in ["eval", *IMAGENET_TEST_SETS]:
        assert results[f"{name}/examples"] == (4 if name == "real" else N), name
        assert 0.0 <= results[f"{name}/top1"] <= 100.0 and results[f"{name}/ece"] >= 0.0
        assert (name == "real") == (f"{name}/nll" not in results), name
    # ReaL's per-class top-1: the classes of the labelled images' sets, each over the images
    # whose set holds it; one image per class here, so classes 2 and 7 (one image) agree,
    # as do 10 and 11, and the mean over the four images is the top-1.
    per_class = arrays["real"]["per_class_top1"]
    assert per_class.shape == (1000,) and sorted(np.flatnonzero(~np.isnan(per_class))) == [
        1,
        2,
        3,
        7,
        10,
        11,
    ]
    assert per_class[2] == per_class[7] and per_class[10] == per_class[11]
    assert np.isclose(np.mean(per_class[[1, 2, 3, 10]]), results["real/top1"])
