"""The `tfds:<name>` source: a TensorFlow Datasets dataset, read per process through tf.data.

TensorFlow and TensorFlow Datasets are imported when the source is resolved (`get_source`),
so this module imports without them, and a config naming a TFDS dataset on a machine without
them fails at once with what to install (`cnnx.data.sources.require_tensorflow`).
"""

import dataclasses

from absl import logging

from cnnx.data.sources import Source, require_tensorflow, source
from cnnx.errors import ConfigError, DataError


@dataclasses.dataclass
class TfdsSource(Source):
    """A TensorFlow Datasets dataset, prepared in `data_dir` (default ~/tensorflow_datasets)."""

    builder: object = None
    image_key: str = "image"
    label_key: str = "label"
    # The labels are sets (ImageNet-ReaL's 'real_label'), given as (num_classes,) multi-hot.
    label_sets: bool = False
    global_order = False

    def num_examples(self, split: str) -> int:
        splits = self.builder.info.splits
        try:
            return splits[split].num_examples
        except (KeyError, ValueError):
            if len(splits):  # the dataset is there but has no such split
                raise ConfigError(
                    f"TFDS dataset {self.name!r} has no split {split!r}; available: "
                    f"{sorted(splits.keys())}."
                ) from None
        # No split metadata (only under tfds.testing.mock_data): count by reading.
        return int(self._read(split, shuffle=False, seed=0).reduce(0, lambda n, _: n + 1))

    def _read(self, split: str, shuffle: bool, seed: int):
        import tensorflow_datasets as tfds

        read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=16)
        return self.builder.as_dataset(
            split=split,
            shuffle_files=shuffle,
            read_config=read_config,
            decoders={self.image_key: tfds.decode.SkipDecoding()},
        )

    def dataset(self, split, *, process_index, process_count, drop_remainder, seed):
        import tensorflow as tf
        import tensorflow_datasets as tfds

        if process_count > 1:
            split = tfds.split_for_jax_process(
                split,
                process_index=process_index,
                process_count=process_count,
                drop_remainder=drop_remainder,
            )
        ds = self._read(split, shuffle=drop_remainder, seed=seed)  # shuffle files when training
        if self.label_sets:
            k = self.num_classes
            return ds.map(lambda e: {"image": e[self.image_key], "label": _multi_hot(e, k)})
        return ds.map(
            lambda e: {"image": e[self.image_key], "label": tf.cast(e[self.label_key], tf.int32)}
        )


def _multi_hot(example, num_classes: int):
    """A label set (ImageNet-ReaL's variable-length 'real_label') as (num_classes,) int32."""
    import tensorflow as tf

    labels = tf.cast(example["real_label"], tf.int32)
    hot = tf.reduce_max(tf.one_hot(labels, num_classes, dtype=tf.int32), axis=0)
    return tf.ensure_shape(tf.where(tf.size(labels) > 0, hot, 0), [num_classes])


def tfds_source(name: str, data_dir: str | None, download: bool) -> TfdsSource:
    """A TFDS dataset (`name` as `tfds.builder` takes it, e.g. 'imagenet2012:5.1.0').

    Args:
      data_dir: where it is prepared (None: TFDS's default, ~/tensorflow_datasets).
      download: prepare it when it is not (for datasets TFDS can download).

    Raises:
      DataError: TFDS does not know it; it is not prepared (naming the command that
        prepares it, `cnnx.data.prepare`, and the manual download steps); downloading or
        preparing it failed (one line, `cnnx.data.prepare.prepare`); it has no ClassLabel
        'label'.
      MissingDependency: a module TFDS needs to prepare it is missing.
    """
    from cnnx.data import prepare

    builder = prepare.builder_for(name, data_dir)
    if not builder.is_prepared():
        where = builder.data_dir
        if prepare.needs_manual_download(builder):
            manual = prepare.default_manual_dir(builder)
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {where} and needs a manual download: "
                f"{prepare.manual_steps(name, manual)}, then run "
                f"`{prepare.command(name, data_dir)}`; or point --config.data.data_dir at "
                "the directory where it is prepared."
            )
        if not download:
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {where}. Run "
                f"`{prepare.command(name, data_dir)}`, set --config.data.download=True to let "
                "training download it, or point --config.data.data_dir at a prepared copy."
            )
        builder = prepare.prepare(name, data_dir, say=logging.info)
    info = builder.info
    keys = info.features.keys()
    if "label" not in keys and "real_label" in keys:  # ImageNet-ReaL: a set per image
        label = info.features["real_label"].feature
        return TfdsSource(
            name=f"tfds:{name}",
            num_classes=label.num_classes,
            builder=builder,
            label_key="real_label",
            label_sets=True,
        )
    label = info.features["label"] if "label" in keys else None
    if label is None or not hasattr(label, "num_classes"):
        raise DataError(f"TFDS dataset {name!r} has no ClassLabel feature named 'label'.")
    return TfdsSource(name=f"tfds:{name}", num_classes=label.num_classes, builder=builder)


@source("tfds")
def _tfds(arg: str, data) -> TfdsSource:
    require_tensorflow(f"--config.data.source=tfds:{arg}", datasets=True)
    return tfds_source(arg, data.get("data_dir"), data["download"])
