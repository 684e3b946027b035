"""The chip table: peaks by JAX's device_kind strings, MFU arithmetic, what 'auto' picks."""

import pytest

from cnnx.backends import chips


@pytest.mark.parametrize(
    "kind, name, bf16, fp32",
    [
        ("TPU v4", "TPU v4", 275.0, 275.0),
        ("TPU v5 lite", "TPU v5e", 197.0, 197.0),
        ("TPU v5e", "TPU v5e", 197.0, 197.0),
        ("TPU v5", "TPU v5p", 459.0, 459.0),
        ("TPU v5p", "TPU v5p", 459.0, 459.0),
        ("TPU v6 lite", "TPU v6e", 918.0, 918.0),
        ("NVIDIA A100-SXM4-40GB", "A100", 312.0, 156.0),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0, 156.0),
        ("NVIDIA A100-PCIE-40GB", "A100", 312.0, 156.0),
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.0, 494.5),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.0, 378.0),
        ("NVIDIA H200", "H200 SXM", 989.0, 494.5),
    ],
)
def test_peaks_by_device_kind(kind, name, bf16, fp32):
    assert chips.chip(kind).name == name
    assert chips.peak_tflops(kind, "bfloat16") == bf16
    assert chips.peak_tflops(kind, "float16") == bf16
    assert chips.peak_tflops(kind, "float32") == fp32


@pytest.mark.parametrize(
    "kind", ["cpu", "TPU v4 lite", "NVIDIA H100 NVL", "NVIDIA H200 NVL", "Tesla V100-SXM2-16GB"]
)
def test_unknown_chips_have_no_peak(kind):
    assert chips.chip(kind) is None
    assert chips.peak_tflops(kind, "bfloat16") is None


def test_mfu_is_achieved_flops_over_peak():
    # 24.5 GFLOP per image x 128 images in 21.7 ms on a 989 TFLOP/s chip: 14.6% (issue 26).
    share = chips.mfu(24.5e9 * 128, 0.0217, 989.0)
    assert share == pytest.approx(24.5e9 * 128 / 0.0217 / 989e12)
    assert 0.145 < share < 0.147
    assert chips.mfu(1e12, 1.0, None) is None
    assert chips.mfu(1e12, 0.0, 100.0) is None


@pytest.mark.parametrize(
    "platform, kind, capability, dtype",
    [
        ("cpu", "cpu", None, "float32"),
        ("tpu", "TPU v5 lite", None, "bfloat16"),
        ("gpu", "NVIDIA H100 80GB HBM3", "9.0", "bfloat16"),
        ("cuda", "NVIDIA RTX A6000", "8.6", "bfloat16"),
        ("gpu", "Tesla V100-SXM2-16GB", "7.0", "float32"),
        ("gpu", "Tesla T4", None, "float32"),
    ],
)
def test_auto_dtype(platform, kind, capability, dtype):
    assert chips.auto_dtype(platform, kind, capability) == dtype
