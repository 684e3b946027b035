"""TensorBoard event files without TensorFlow: what TensorBoard reads back from them, and that
it is what TensorFlow's writer (clu's SummaryWriter, cnnx's writer before) gives."""

import pytest
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from cnnx.train import event_files, metrics_log

SCALARS = {1: {"train/loss": 2.5, "train/top1": 12.5}, 7: {"train/loss": 0.25, "eval/top1": 99.5}}
HPARAMS = {"optim.base_lr": 0.1, "model.name": "lenet5", "train.ema": True, "batch": 64}


def write(writer):
    for step, scalars in SCALARS.items():
        writer.write_scalars(step, scalars)
    writer.write_hparams(HPARAMS)
    writer.close()


def read(logdir) -> tuple[dict, dict]:
    """({tag: [(step, value)]} of the scalars, {name: value} of the hparams) as TensorBoard
    loads them."""
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    scalars = {
        tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
    }
    content = acc.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    hparams = {
        name: getattr(value, value.WhichOneof("kind")) for name, value in info.hparams.items()
    }
    return scalars, hparams


def expected_scalars() -> dict:
    out = {}
    for step, scalars in SCALARS.items():
        for tag, value in scalars.items():
            out.setdefault(tag, []).append((step, value))
    return out


def test_tensorboard_reads_the_scalars_and_hparams(tmp_path):
    write(metrics_log.metric_writer(str(tmp_path)))
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    scalars, hparams = read(tmp_path)
    assert scalars == expected_scalars()  # float32 values, exact for these
    assert hparams == HPARAMS


def test_the_same_as_tensorflows_writer(tmp_path):
    """Tags, steps, values, the scalars' plugin metadata and the hparams equal those clu's
    TensorFlow writer writes (the files differ in wall times and the file name only)."""
    pytest.importorskip("tensorflow")
    from clu import metric_writers

    write(metric_writers.SummaryWriter(str(tmp_path / "tf")))
    write(event_files.EventWriter(str(tmp_path / "cnnx")))
    assert read(tmp_path / "cnnx") == read(tmp_path / "tf")
    metadata = {}
    for name in ("tf", "cnnx"):
        acc = EventAccumulator(str(tmp_path / name))
        acc.Reload()
        tags = set(acc.Tags()["tensors"]) - {hparams_metadata.SESSION_START_INFO_TAG}
        metadata[name] = {tag: acc.SummaryMetadata(tag) for tag in tags}
    assert metadata["cnnx"] == metadata["tf"] and len(metadata["tf"]) == 3


def test_a_second_writer_opens_a_second_file(tmp_path):
    first = event_files.EventWriter(str(tmp_path))
    second = event_files.EventWriter(str(tmp_path))
    assert first.path != second.path and len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    first.close()
    second.close()


def test_processes_other_than_0_write_nothing(tmp_path):
    write(metrics_log.metric_writer(str(tmp_path / "run"), just_logging=True))
    assert not (tmp_path / "run").exists()
