"""scripts/device_check.py: its train.py command, its table, and a whole smoke run on the CPU."""

import json

import pytest

from tests.analysis.scripts import load_script

device_check = load_script("device_check")


def test_train_command_turns_every_part_of_the_loop_on():
    command = device_check.train_command("resnet50", "bfloat16", 256, 224, 100, "/w", True)
    flags = dict(a.split("=", 1) for a in command[2:])
    assert flags["--config.model.name"] == "resnet50"
    assert flags["--config.model.dtype"] == "bfloat16"
    assert flags["--config.train.batch_size"] == "256"
    assert flags["--config.data.source"] == "synthetic"
    assert flags["--config.ckpt.every_steps"] == flags["--config.eval.every_steps"] == "50"
    assert flags["--config.train.profile_steps"] == "52,5"
    assert flags["--workdir"] == "/w"


def test_table_rows_from_results():
    results = {
        "status": "completed",
        "device_kind": "NVIDIA H100 80GB HBM3",
        "compute_dtype": "bfloat16",
        "images_per_s_per_chip": 6123.4,
        "tflops_per_chip": 150.04,
        "mfu": 0.1517,
        "compile_s": 41.26,
        "peak_memory_mb": 30123.0,
        "host_share": 0.021,
        "host_share/input": 0.015,
        "host_share/metrics": 0.0,
        "host_share/logging": 0.001,
        "host_share/checkpoint": 0.004,
        "host_share/other": 0.001,
    }
    rows = [device_check.summarize("resnet50", results), {"model": "vit_b_16", "status": "failed"}]
    text = device_check.table(rows)
    assert "| resnet50 | bfloat16 | 6,123 | 150.0 | 15.2% | 41.3 | 30,123 | 2.1% |" in text
    assert "| 2.1% | input 1.5, checkpoint 0.4, logging 0.1, other 0.1 |" in text
    assert "| vit_b_16 | failed | - | - | - | - | - | - | - |" in text


@pytest.mark.slow
def test_smoke_run_trains_and_compares_float32(tmp_path):
    report = device_check.main(["--smoke", "--steps=2", f"--out={tmp_path}"])
    (row,) = report["rows"]
    assert row["status"] == "completed", row
    assert row["images_per_s_per_chip"] > 0 and row["compile_s"] > 0
    assert row["mfu"] is None  # no CPU peak
    assert set(row["host_share_parts"]) == {"input", "metrics", "logging", "checkpoint", "other"}
    assert sum(row["host_share_parts"].values()) == pytest.approx(row["host_share"], abs=1e-9)
    check = report["float32_check"]
    assert check["ok"] and check["cpu"]["platform"] == "cpu"
    assert json.loads((tmp_path / "device_check.json").read_text())["rows"] == [row]
    assert "| lenet5 | float32 |" in (tmp_path / "device_check.md").read_text()
