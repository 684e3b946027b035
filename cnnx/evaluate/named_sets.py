"""The named test sets: evaluator entries a config can add in one call
(`configs/common.py:imagenet_test_sets`) and eval.py can run on any checkpoint by name
(`--evals=v2_matched,real`), whether or not the run's config declared them.

Imports neither TensorFlow nor JAX (config files import it).
"""

import ml_collections

from cnnx.evaluate.entries import add_entries, evaluator

# The ImageNet test sets (through TFDS), as evaluator entries: name -> (TFDS name, split,
# classification options). Every one predicts ImageNet's 1000 classes, in TFDS's label order.
IMAGENET_TEST_SETS = {
    # ImageNet-V2 (Recht et al., 2019), its three sampling variants, 10,000 images each.
    "v2_matched": ("imagenet_v2/matched-frequency", "test", {}),
    "v2_threshold": ("imagenet_v2/threshold-0.7", "test", {}),
    "v2_top": ("imagenet_v2/topimages", "test", {}),
    # ImageNet-ReaL (Beyer et al., 2020): the 50,000 validation images with re-assessed label
    # sets; a prediction in the set is right, images without labels are left out. Built from
    # ILSVRC2012_img_val.tar, a manual download (the error says where it goes).
    "real": ("imagenet2012_real", "validation", {"labels": "real"}),
    # ImageNet-A (7,500 images) and ImageNet-R (30,000) cover 200 classes; the logits are
    # restricted to them before the argmax (Hendrycks et al., 2021).
    "imagenet_a": ("imagenet_a", "test", {"class_subset": "imagenet_a"}),
    "imagenet_r": ("imagenet_r", "test", {"class_subset": "imagenet_r"}),
    # ImageNet-Sketch (Wang et al., 2019): 50,889 sketches of the 1000 classes.
    "sketch": ("imagenet_sketch", "test", {}),
}


def named_entry(name: str, every_epochs: float | None = None) -> ml_collections.ConfigDict:
    """The evaluator entry of the named test set `name` (a key of IMAGENET_TEST_SETS): its
    TFDS source and split, its label rule, the run's eval preprocessing, resolution and crop.

    Args:
      name: the set.
      every_epochs: its cadence in a training run (None: after the last step only).

    Raises:
      KeyError: `name` is no named set.
    """
    tfds_name, split, options = IMAGENET_TEST_SETS[name]
    cadence = {"every_epochs": every_epochs} if every_epochs else {"every_steps": 0}
    data = {"source": f"tfds:{tfds_name}", "split": split}
    return evaluator(data=data, options=dict(options), **cadence)


def with_named_sets(config, names) -> ml_collections.ConfigDict:
    """A copy of `config` whose `evals` also hold the named test sets among `names` that it
    does not declare itself (eval.py --evals on a run that did not list them); other names
    are left to `entries.resolve`, which refuses them naming the valid ones."""
    config = ml_collections.ConfigDict(config.to_dict())
    declared = set(config.get("evals") or {})
    added = [n for n in dict.fromkeys(names) if n in IMAGENET_TEST_SETS and n not in declared]
    if added:
        add_entries(config, {name: named_entry(name) for name in added})
    return config
