"""The host a benchmark runs on: CPU model, the instruction sets that set its matmul speed, load.

Two hosts sold as the same "2-core Xeon" differed 2x in XLA's float32 matmul ceiling (issue
32: 429-479 against 201-203 GFLOP/s), so a figure names its host. `docs/xla_cpu.md` says
which features matter and why.
"""

import os

# /proc/cpuinfo flags that decide which GEMM kernels XLA (Eigen, YNNPACK) and oneDNN can use.
MATMUL_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def cpu(cpuinfo: str | None = None) -> dict:
    """The first processor of /proc/cpuinfo (or of the text given).

    Returns:
      'model_name', 'family' and 'model' (the vendor's numbers, e.g. Intel family 6 model 207
      for Emerald Rapids), 'features' (those of `MATMUL_FEATURES` present, in that order) and
      'cpus' (`os.cpu_count()`); empty strings and no features where there is no
      /proc/cpuinfo.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {
        "model_name": fields.get("model name", ""),
        "family": fields.get("cpu family", ""),
        "model": fields.get("model", ""),
        "features": [f for f in MATMUL_FEATURES if f in flags],
        "cpus": os.cpu_count(),
    }


def describe(info: dict) -> str:
    """One line: 'AMD EPYC (family 25, model 17), 2 CPUs: avx2 fma avx512f ...'."""
    numbers = f" (family {info['family']}, model {info['model']})" if info["model"] else ""
    features = " ".join(info["features"]) or "no AVX2"
    return f"{info['model_name'] or 'unknown CPU'}{numbers}, {info['cpus']} CPUs: {features}"


def load_avg() -> list[float] | None:
    """The host's 1, 5 and 15-minute load averages (None where the OS has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None
