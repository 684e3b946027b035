"""A trial's cost (`cnnx.sweeps.worker.model_cost`): with distillation the frozen teacher's
forward MACs join the student's in the step's figure (issue 31, item 4)."""

import logging

from cnnx.analysis.flops import count_macs
from cnnx.sweeps.worker import model_cost
from tests.train.tiny import tiny_config


def test_the_teachers_macs_are_counted_with_the_students(caplog):
    plain = model_cost(tiny_config())
    assert plain["macs"] == count_macs("lenet5", 32) and "train_macs" not in plain
    config = tiny_config(
        **{
            "train.distill": "soft",
            # The cost needs the teacher's name only: its weights are not read.
            "train.teacher_torch_weights": "never_read.pth",
            "train.teacher_model": "resnet18",
        }
    )
    with caplog.at_level(logging.INFO):
        cost = model_cost(config)
    assert cost["macs"] == plain["macs"]  # the student's inference cost, as without a teacher
    # ResNet-18 on the digits' 32 px, 1-channel images: its registered 3-channel count less
    # the two channels its 7x7/2 stem (16x16x64 outputs) does not read.
    teacher = count_macs("resnet18", 32, num_classes=10) - 2 * (16 * 16 * 64 * 7 * 7)
    assert cost["train_macs"] == {
        "student": plain["macs"],
        "teacher": teacher,
        "total": plain["macs"] + teacher,
    }
    assert f"teacher resnet18 {teacher:,} = {plain['macs'] + teacher:,}" in caplog.text
