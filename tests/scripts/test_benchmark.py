"""scripts/benchmark.py and the pieces it reports (cnnx.analysis.benchmark, torch_speed,
input_speed), on tiny models so that the whole file runs in seconds."""

import json

import numpy as np
import pytest

from cnnx import models
from cnnx.analysis import benchmark, flops, grouped_layers, host, input_speed, rounds, torch_speed
from tests.analysis.scripts import load_script

TINY = ["--models=lenet5", "--batch_size=2", "--image_size=32", "--repeats=2"]
TINY += ["--warmup=1", "--matmul_size=256", "--rounds=1"]
POSITIVE = [
    "train_ips",
    "infer_ips",
    "train_compile_s",
    "infer_compile_s",
    "init_s",
    "train_gflops",
    "infer_gflops",
    "train_fraction_of_matmul",
    "conv_ceiling_train_gflops",
    "conv_ceiling_infer_gflops",
    "train_fraction_of_conv",
    "train_peak_mb",
    "infer_peak_mb",
]


def _script():
    return load_script("benchmark")


def test_script_end_to_end(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert _script().main([*TINY, f"--output={out}"]) == 0
    result = json.loads(out.read_text())
    assert result["ceilings"]["matmul_gflops"]["float32"] > 0
    (m,) = result["models"]
    assert m["model"] == "lenet5" and m["batch"] == 2 and m["resolution"] == 32
    for key in POSITIVE:
        assert m[key] > 0, key
    forward = m["gflop_per_image_inference"] * 2
    assert 2 * forward < m["gflop_per_step_train"] < 3 * forward  # no input gradient for C1
    assert len(m["conv_layers"]) == 3  # C1, C3, C5
    captured = capsys.readouterr()
    assert "lenet5" in captured.out
    assert "benchmark" in captured.err and "1/1" in captured.err  # the tqdm progress bar
    assert result["config"]["rounds"] == 1 and len(result["config"]["load_avg_rounds"]) == 1
    assert "load average (1 min)" in captured.out and "matmul ceiling" in captured.out


def test_model_convolutions_are_the_models_own():
    model = models.create("resnet18")
    shape = (2, 32, 32, 3)
    convs = benchmark.model_convolutions(model, shape)
    # Stem, 16 block convolutions and 3 projection shortcuts; only the stem sees the image.
    assert sum(c["count"] for c in convs) == 20
    assert [c["lhs"].shape for c in convs if c["first"]] == [shape]
    conv_macs = sum(
        layer.macs for layer in benchmark.trace(model, shape).layers if layer.kind == "conv"
    )
    assert sum(c["macs"] * c["count"] for c in convs) == conv_macs
    forward, train = benchmark.model_flops(model, shape)
    stem = 2 * 2 * 16 * 16 * 7 * 7 * 3 * 64
    assert forward == 2 * flops.total_macs(benchmark.trace(model, shape))
    assert train == 3 * forward - stem


class _TinyTorch:
    """A torch LeNet standing in for lenet5's (missing) reference, to test the plumbing."""

    @staticmethod
    def build():
        import torch

        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 6, 5),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(96, 1000),
        )


@pytest.mark.torch
def test_vs_torch_reports_ratios(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    monkeypatch.setattr(torch_speed, "counterpart", lambda name: (_TinyTorch.build, "test:lenet"))
    out = tmp_path / "b.json"
    args = [*TINY, "--vs_torch", "--noconv_ceiling", f"--output={out}", "--rounds=2"]
    assert _script().main(args) == 0
    result = json.loads(out.read_text())
    (m,) = result["models"]
    assert m["rounds"] == 2 and m["repeats"] == 2
    for key in ("train_ratio", "infer_ratio", "train_ratio_cl", "infer_ratio_cl"):
        assert len(m[f"{key}_rounds"]) == 2
        assert m[key] == pytest.approx(np.median(m[f"{key}_rounds"]))
    # Both ceilings every round: XLA's and torch's, measured the same way.
    ceil = result["ceilings"]
    assert [len(v) for v in ceil["matmul_gflops_rounds"].values()] == [2, 2]
    assert ceil["torch_matmul_gflops"]["float32"] > 0
    assert len(result["config"]["load_avg_rounds"]) == 2
    assert m["torch"]["reference"] == "test:lenet"
    for key in ("train_ratio", "infer_ratio", "torch_train_ips", "torch_infer_ips"):
        assert m[key] > 0, key
    assert m["torch"]["train_ips"] == m["torch_train_ips"]
    # Both memory formats by default: channels-last is what torch's CPU users run.
    for key in ("train_ratio_cl", "infer_ratio_cl", "torch_cl_train_ips", "torch_cl_infer_ips"):
        assert m[key] > 0, key
    assert m["torch_cl"]["channels_last"] and not m["torch"]["channels_last"]


def test_families_and_per_model_batches():
    script = _script()
    args = script.parse_args(["--families"])
    assert args.vs_torch and args.image_size == 224
    assert args.model_batches == list(script.FAMILIES)
    assert ("efficientnet_b0", 8) in args.model_batches and ("resnet50", 16) in args.model_batches
    assert args.torch_formats == ["nchw", "channels_last"]
    args = script.parse_args(["--models=resnet50:4,lenet5", "--batch_size=2"])
    assert args.model_batches == [("resnet50", 4), ("lenet5", 2)]
    assert script.parse_args(["--torch_formats=channels_last"]).torch_formats == ["channels_last"]
    bad_args = (["--models=resnet50:x"], ["--models=resnet50:0"], ["--torch_formats=x"])
    for bad in bad_args:
        with pytest.raises(SystemExit):
            script.parse_args(bad)


def test_interleaved_rounds_rotate_and_pair():
    calls = []
    runs = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = benchmark.time_interleaved(runs, warmup=1, repeats=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-ups, then rotating rounds
    assert [len(t) for t in times.values()] == [3, 3]
    # Round by round: the host slows down 10x in round 2, and both sides with it.
    ours, theirs = [1.0, 10.0, 1.1], [2.0, 20.0, 2.0]
    assert benchmark.paired_ratio(ours, theirs) == pytest.approx(2.0)
    assert benchmark.paired_ratio([1.0, 1.0, 4.0], [1.0, 3.0, 4.0]) == 1.0


@pytest.mark.torch
def test_torch_counterpart_is_the_parity_reference():
    pytest.importorskip("torchvision")
    build, ref = torch_speed.counterpart("mobilenet_v3_small")
    assert ref == "torchvision:mobilenet_v3_small"
    count = sum(p.numel() for p in build().parameters())
    assert count == models.get_spec("mobilenet_v3_small").param_count
    assert torch_speed.counterpart("lenet5") is None
    t = torch_speed.benchmark_torch("mobilenet_v3_small", 2, 32, warmup=1, repeats=1)
    assert t["train_ips"] > 0 and t["infer_ips"] > 0
    assert torch_speed.benchmark_torch("lenet5", 2, 32) is None
    with pytest.raises(ValueError, match="no torchvision/timm reference"):
        torch_speed.TorchRunner("lenet5", 2, 32)


def test_input_pipeline_over_jpegs(tmp_path):
    input_speed.write_jpegs(str(tmp_path), 6, size=(120, 90), classes=2)
    files = sorted(tmp_path.glob("train/*/*.jpg"))
    assert len(files) == 6 and files[0].read_bytes()[:2] == b"\xff\xd8"
    r = input_speed.pipeline_throughput(str(tmp_path), 2, resolution=48, warmup=1, batches=4)
    assert r["ips"] > 0 and r["files"] == 6 and r["batches"] == 4


def test_stats_are_medians():
    s = benchmark._stats([3.0, 1.0, 2.0], work=4.0)
    assert s["median_s"] == 2.0 and s["best_s"] == 1.0 and s["per_s"] == 2.0
    assert np.isfinite(benchmark.matmul_ceiling(size=64, warmup=1, repeats=1))


@pytest.mark.torch
def test_grouped_layers_time_every_implementation():
    pytest.importorskip("torch")
    from cnnx.backends.cpu import onednn

    rows = grouped_layers.depthwise_layers(
        batch=1, layers=((9, 8, 3, 2, 8), (9, 8, 3, 1, 2)), warmup=1, repeats=1, torch_too=True
    )
    depthwise, grouped = rows
    assert depthwise["layer"] == "9x9x8 3x3 /2" and grouped["layer"] == "9x9x8 3x3 /1 g2"
    extra = ("onednn",) if onednn.available() else ()
    for row, timed in ((depthwise, ("xla", "cnnx", "torch", *extra)), (grouped, ("torch", *extra))):
        for kind in ("fwd", "train"):
            assert {k for k in row if k.endswith(f"_{kind}_ms")} == {
                f"{w}_{kind}_ms" for w in timed
            }
            assert all(row[f"{w}_{kind}_ms"] > 0 for w in timed)
    table = _script().layer_table(rows)
    assert "9x9x8 3x3 /2" in table and "g2" in table and "onednn" in table


def test_table_warns_when_the_host_is_busy():
    script = _script()
    assert script.load_warning([0.2, 0.2, 0.2], [1.5, 0.5, 0.3], 2) is None  # idle, then us
    busy_before = script.load_warning([1.8, 1.0, 1.0], [2.0, 1.0, 1.0], 2)
    assert "busy" in busy_before and "1.8 before" in busy_before
    assert "busy" in script.load_warning([0.1, 0.1, 0.1], [6.0, 3.0, 1.0], 2)  # others joined
    assert script.load_warning(None, None, 2) is None  # no getloadavg on this OS
    result = {
        "config": {
            "device": "cpu",
            "xla_flags": "",
            "load_avg": [8.1, 6, 5],
            "load_avg_after": [7.9, 6, 5],
            "cpu_count": 2,
        },
        "ceilings": {"matmul_gflops": {"float32": 200.0}},
        "models": [],
    }
    assert "WARNING: the host was busy" in script.table(result)
    result["config"].update(load_avg=[0.1, 0.1, 0.1], load_avg_after=[0.9, 0.5, 0.2])
    assert "WARNING" not in script.table(result)


def test_spread_and_verdict_from_hand_made_timings():
    # Three rounds of paired seconds (ours, torch's): torch faster in round 2 only.
    timed = [([1.0, 1.0, 1.1], [1.2, 1.3, 1.2]), ([2.0, 2.1], [1.8, 1.9]), ([1.0], [1.1])]
    per_round = [benchmark.paired_ratio(ours, theirs) for ours, theirs in timed]
    assert per_round == pytest.approx([1.2, 0.9, 1.1], abs=0.02)
    s = rounds.spread(per_round)
    assert (s.median, s.low, s.high, s.rounds) == (per_round[2], per_round[1], per_round[0], 3)
    assert "straddle 1" in rounds.verdict(s)
    agree = rounds.spread([1.30, 1.40, 1.35])
    assert agree.relative == pytest.approx(0.1 / 1.35)
    assert rounds.verdict(agree) is None and str(agree) == "1.35 (1.30-1.40)"
    wide = rounds.spread([1.1, 1.6, 1.3])  # all faster, but by 8 % or by 45 %?
    assert "spread 38% of the median, over 20%" in rounds.verdict(wide)
    assert rounds.verdict(wide, max_spread=0.5) is None
    assert "one round" in rounds.verdict(rounds.spread([2.0]))
    # Ceilings have no side to be on: only their spread counts.
    assert rounds.verdict(rounds.spread([180.0, 200.0, 220.0]), parity=None) is None
    with pytest.raises(ValueError):
        rounds.spread([])


def test_summary_marks_ratios_too_wide_to_conclude():
    script = _script()
    model = {"model": "resnet50", "infer_ratio_rounds": [1.3, 1.35, 1.4]}
    model["train_ratio_rounds"] = [0.9, 1.2, 1.1]
    result = {
        "config": {"rounds": 3, "max_spread": 0.2, "load_avg": [0.5, 0.5, 0.5]},
        "ceilings": {
            "matmul_gflops": {"float32": 200.0},
            "matmul_gflops_rounds": {"xla float32": [200.0, 150.0, 201.0]},
        },
        "models": [model],
    }
    lines = script.spread_lines(result)
    row = next(line for line in lines if line.startswith("resnet50"))
    assert "1.35 (1.30-1.40)" in row and "?" not in row.split("1.40)")[0]
    assert "1.10 (0.90-1.20)?" in row
    assert (
        lines[-2] == "WARNING: resnet50 train_ratio: the rounds straddle 1 (0.90-1.20): no winner"
    )
    host_lines = script.host_lines(result)
    assert "xla float32 200 (150-201)" in host_lines[0]
    assert "WARNING: the xla float32 ceiling moved" in host_lines[-1]
    model.pop("train_ratio_rounds")
    assert "every ratio's rounds agree" in script.spread_lines(result)[-1]
    result["config"]["rounds"] = 1
    model["infer_ratio_rounds"] = [1.3]
    assert "one round" in script.spread_lines(result)[-1]


def test_host_reads_the_cpu_model_and_its_matmul_features():
    text = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8581C\n"
        "flags\t\t: fpu avx2 fma avx512f avx512_bf16 avx512_vnni avx512_fp16\n\n"
        "processor\t: 1\nmodel name\t: other\n"
    )
    info = host.cpu(text)
    assert info["model"] == "207" and info["family"] == "6"
    assert info["model_name"] == "Intel(R) Xeon(R) Platinum 8581C"
    assert info["features"] == [
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
    ]
    assert "model 207" in host.describe(info) and "amx" not in host.describe(info)
    assert host.cpu("")["features"] == [] and "unknown CPU" in host.describe(host.cpu(""))
