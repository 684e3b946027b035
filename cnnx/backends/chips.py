"""What cnnx knows about accelerator chips: peak dense TFLOP/s per compute dtype, and which
compute dtype `model.dtype = "auto"` picks on them.

Chips are recognised by the `device_kind` string JAX reports for a device ("TPU v5 lite",
"NVIDIA H100 80GB HBM3"); nothing here imports JAX, so the table and its lookups are plain
functions of strings. A chip missing from the table has no peak (MFU is then not reported):
never a guessed one. The CPU has none either: its ceiling depends on the host's cores and
load (`scripts/benchmark.py` measures one, the matmul ceiling, beside each model).
"""

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Chip:
    """One accelerator chip (one JAX device on these kinds).

    Attributes:
      name: what a log line calls it ("TPU v5e", "H100 SXM").
      bf16_tflops: dense (no sparsity) bfloat16 / float16 matrix peak, TFLOP/s.
      fp32_tflops: the dense peak a float32 matrix product runs at under JAX's default
        precision: on NVIDIA Ampere and later, TF32 tensor cores; on TPUs, one bfloat16 pass
        of the matrix unit (JAX's default for float32 there), so the bfloat16 peak.
    """

    name: str
    bf16_tflops: float
    fp32_tflops: float


# (pattern over the lower-cased device_kind, chip). First match wins; the patterns refuse the
# variants whose peaks differ and are not in the table (H100/H200 NVL, TPU v4 lite).
_CHIPS = (
    # cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16 per chip (one JAX device per chip).
    (r"tpu v4", Chip("TPU v4", 275.0, 275.0)),
    # cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16 per chip. JAX reports "TPU v5 lite".
    (r"tpu v5 ?(lite|e)", Chip("TPU v5e", 197.0, 197.0)),
    # cloud.google.com/tpu/docs/v5p: 459 TFLOP/s bf16 per chip. JAX reports "TPU v5".
    (r"tpu v5p?", Chip("TPU v5p", 459.0, 459.0)),
    # cloud.google.com/tpu/docs/v6e (Trillium): 918 TFLOP/s bf16 per chip ("TPU v6 lite").
    (r"tpu v6 ?(lite|e)", Chip("TPU v6e", 918.0, 918.0)),
    # NVIDIA A100 datasheet (SXM4 and PCIe alike): BF16 312, TF32 156 dense (624 / 312 with
    # sparsity).
    (r"nvidia a100\b.*", Chip("A100", 312.0, 156.0)),
    # NVIDIA H100 datasheet, PCIe: BF16 756, TF32 378 dense (1,513 / 756 with sparsity).
    (r"nvidia h100 pcie", Chip("H100 PCIe", 756.0, 378.0)),
    # NVIDIA H100 datasheet, SXM ("NVIDIA H100 80GB HBM3"): BF16 989, TF32 495 dense
    # (1,979 / 989 with sparsity).
    (r"nvidia h100(?!.*(pcie|nvl)).*", Chip("H100 SXM", 989.0, 494.5)),
    # NVIDIA H200 datasheet, SXM: BF16 989, TF32 495 dense (the H100 SXM's compute).
    (r"nvidia h200(?!.*nvl).*", Chip("H200 SXM", 989.0, 494.5)),
)

# Compute dtypes and which peak they run at (float16 on the bfloat16 tensor core / MXU rate).
_PEAK_FIELD = {"bfloat16": "bf16_tflops", "float16": "bf16_tflops", "float32": "fp32_tflops"}


def chip(device_kind: str) -> Chip | None:
    """The table's chip for a JAX `device_kind`, or None (CPU, or a chip it does not know)."""
    kind = device_kind.strip().lower()
    for pattern, entry in _CHIPS:
        if re.fullmatch(pattern, kind):
            return entry
    return None


def peak_tflops(device_kind: str, dtype: str) -> float | None:
    """Dense peak TFLOP/s of one chip for matrix products in `dtype`, or None if unknown.

    Args:
      device_kind: as JAX reports it (`jax.devices()[0].device_kind`).
      dtype: the compute dtype's name ('bfloat16', 'float16', 'float32').
    """
    entry = chip(device_kind)
    if entry is None or dtype not in _PEAK_FIELD:
        return None
    return getattr(entry, _PEAK_FIELD[dtype])


def mfu(flops_per_step: float, step_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation of one chip: achieved FLOP/s over the chip's peak.

    Args:
      flops_per_step: FLOPs one chip executes per step (XLA's cost analysis of its program).
      step_s: seconds per step.
      peak: the chip's peak in TFLOP/s (`peak_tflops`), or None.

    Returns:
      A fraction in [0, ...) (1.0 = the peak), or None without a peak or a step time.
    """
    if not peak or step_s <= 0 or flops_per_step <= 0:
        return None
    return flops_per_step / step_s / (peak * 1e12)


def auto_dtype(platform: str, device_kind: str, compute_capability: str | None = None) -> str:
    """The compute dtype `model.dtype = "auto"` means on a device.

    bfloat16 on TPUs and on GPUs with bfloat16 matrix units (NVIDIA compute capability 8.0,
    Ampere, and later; chips of the table), float32 elsewhere (CPUs; older or unknown GPUs).
    Parameters, BatchNorm statistics, the loss, EMA and optimizer state stay float32 whatever
    it picks (the models' `param_dtype`, the losses' upcast).

    Args:
      platform: JAX's platform name ('cpu', 'gpu', 'cuda', 'rocm', 'tpu').
      device_kind: `device.device_kind`.
      compute_capability: `device.compute_capability` of a CUDA device ("9.0"), if any.
    """
    if platform == "tpu":
        return "bfloat16"
    if platform in ("gpu", "cuda", "rocm"):
        if chip(device_kind) is not None:
            return "bfloat16"
        try:
            major = int(str(compute_capability).split(".")[0])
        except ValueError:
            return "float32"
        return "bfloat16" if platform != "rocm" and major >= 8 else "float32"
    return "float32"
