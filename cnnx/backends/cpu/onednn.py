"""2-D convolutions on the CPU through oneDNN (the library torch's CPU convolutions use).

XLA:CPU's own convolutions are slow where torch's are fast: grouped and depthwise layers
(forward and both gradients, 20-4000x behind torch on one layer) and the weight gradient of
dense ones. This module calls oneDNN's convolution, input-gradient and weight-gradient
primitives from inside a jitted program, through XLA's FFI (`jax.ffi.ffi_call`), with a
`jax.custom_vjp` that ties the three together. Measured gains: docs/xla_cpu.md.

Dense layers' matrix products use the same library and switch (`cnnx.backends.cpu.dense`,
`onednn_matmul.cc`); `matmul_implementation` answers for them as `implementations` does here.

The native part, `onednn_conv.cc` with `onednn_matmul.cc`, is optional. It is compiled
against the PyPI packages `onednn-cpu-gomp` (library) and `onednn-devel-cpu-gomp` (headers)
by `make install`, or by `python -m cnnx.backends.cpu.onednn build`, into `_build/` beside
this file; the file name carries a hash of the sources, jaxlib's and oneDNN's versions, so a
stale build is never loaded. Beside it, `<library>.sha256` records its size and hash at build
time: a library that does not match (truncated by a full disk or an interrupted copy, or
another file under its name) is not loaded (a truncated one would crash the process with
SIGBUS) and is reported as needing a rebuild. Without it every convolution stays with XLA
(and cnnx's own CPU gradients), and every dense product too.

The switch, `CNNX_ONEDNN` in the environment (`cnnx.backends.switches`), read when a layer is
traced:

* `auto` (default): oneDNN when the library is built, `cnnx.backends.cpu.enabled()` (JAX's
  default backend is the CPU) and the process has one device. With several devices (e.g.
  `--xla_force_host_platform_device_count`) XLA's partitioner would replicate each call,
  so every device would compute the whole batch; those runs keep XLA's convolutions.
* `on`: oneDNN for every convolution it takes, or `OneDNNUnavailable` saying how to build it.
* `off`: never.

Taken: NHWC inputs, HWIO kernels (`feature_group_count` >= 1, any channel multiplier), any
stride, rhs dilation and non-negative padding, no lhs dilation, float32 or bfloat16. Values
and both gradients agree with `lax.conv_general_dilated` to float rounding
(tests/backends/test_onednn.py).
"""

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
from jax import lax

from cnnx.backends import cpu, switches
from cnnx.errors import ConfigError

SWITCH = switches.ONEDNN.name
SOURCE = Path(__file__).with_name("onednn_conv.cc")
# Compiled into the same library: the dense layers' matrix products (`dense`) and what the
# handlers share (one engine, one lock).
MATMUL_SOURCE = Path(__file__).with_name("onednn_matmul.cc")
HEADER = Path(__file__).with_name("onednn_ffi.h")
BUILD_DIR = Path(__file__).with_name("_build")
LIBRARY_DIST = "onednn-cpu-gomp"  # libdnnl.so (GNU OpenMP threading)
HEADERS_DIST = "onednn-devel-cpu-gomp"  # oneapi/dnnl/*.hpp
TARGETS = ("cnnx_onednn_conv_fwd", "cnnx_onednn_conv_bwd_data", "cnnx_onednn_conv_bwd_weights")
MATMUL_TARGET = "cnnx_onednn_matmul"
_SUPPORTED_DTYPES = ("float32", "bfloat16")


class OneDNNUnavailable(ConfigError, RuntimeError):
    """`CNNX_ONEDNN=on`, but the oneDNN extension is not built or cannot load (a `ConfigError`:
    the entry points print it as one `error:` line)."""


class BuildError(RuntimeError):
    """The oneDNN extension could not be compiled (the message says what is missing)."""


def _dist_file(dist: str, suffix: str) -> Path | None:
    """The installed file of distribution `dist` whose path ends with `suffix`."""
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).replace(os.sep, "/").endswith(suffix):
            return Path(file.locate()).resolve()
    return None


def _versions() -> tuple[str, str] | None:
    try:
        return metadata.version("jaxlib"), metadata.version(LIBRARY_DIST)
    except metadata.PackageNotFoundError:
        return None


def library_path() -> Path | None:
    """Where the extension for this source, jaxlib and oneDNN lives (None: oneDNN absent)."""
    versions = _versions()
    if versions is None:
        return None
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(MATMUL_SOURCE.read_bytes() + HEADER.read_bytes())
    digest.update(" ".join(versions).encode())
    return BUILD_DIR / f"libcnnx_onednn-{digest.hexdigest()[:12]}.so"


def build(quiet: bool = False) -> Path:
    """Compiles `onednn_conv.cc` and `onednn_matmul.cc` (a few seconds); returns the library's path.

    Raises:
      BuildError: oneDNN's packages, jaxlib's FFI headers or a C++ compiler are missing, or
        the compiler failed (its output is in the message).
    """
    library = _dist_file(LIBRARY_DIST, "/libdnnl.so.3")
    header = _dist_file(HEADERS_DIST, "/oneapi/dnnl/dnnl.hpp")
    target = library_path()
    if library is None or header is None or target is None:
        raise BuildError(
            f"oneDNN is not installed: pip install {LIBRARY_DIST} {HEADERS_DIST} "
            "(see requirements.txt for the tested versions)"
        )
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise BuildError("no C++ compiler found (install g++ or set CXX)")
    BUILD_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD_DIR) as tmp:
        output = Path(tmp) / target.name
        command = [
            compiler,
            "-O2",
            "-std=c++17",
            "-shared",
            "-fPIC",
            "-Wno-return-type",  # jaxlib's FFI headers
            f"-I{jax.ffi.include_dir()}",
            f"-I{header.parents[2]}",
            f"-I{HEADER.parent}",
            str(SOURCE),
            str(MATMUL_SOURCE),
            str(library),
            f"-Wl,-rpath,{library.parent}",
            "-o",
            str(output),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"{' '.join(command)}\nfailed:\n{done.stderr[-4000:]}")
        _record(output, target)
        os.replace(output, target)  # atomic: a concurrent loader sees all of it or nothing
    if not quiet:
        print(f"built {target}")
    return target


def _record_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _fingerprint(path: Path) -> str:
    """'<size> <sha256>' of a file."""
    data = path.read_bytes()
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def _record(built: Path, target: Path) -> None:
    """Writes the size and hash of `built` (to be renamed to `target`) beside `target`."""
    tmp = built.with_name(built.name + ".sha256")
    tmp.write_text(_fingerprint(built) + "\n")
    os.replace(tmp, _record_path(target))


def _mismatch(path: Path) -> str | None:
    """Why the library at `path` must not be loaded (it is not the one built), or None."""
    record = _record_path(path)
    rebuild = "rebuild it: `python -m cnnx.backends.cpu.onednn build`"
    if not record.exists():
        return f"the oneDNN extension {path} has no build record ({record.name}); {rebuild}"
    size, digest = record.read_text().split()[:2]
    found = _fingerprint(path).split()
    if found != [size, digest]:
        what = "truncated" if int(found[0]) < int(size) else "replaced by another file"
        return (
            f"the oneDNN extension {path} is not the library that was built ({found[0]} bytes, "
            f"{size} recorded; {what}?); {rebuild}"
        )
    return None


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str]:
    """Loads the library and registers its FFI targets once: (library or None, status line)."""
    path = library_path()
    if path is None:
        return None, f"oneDNN is not installed (pip install {LIBRARY_DIST} {HEADERS_DIST})"
    if not path.exists():
        return None, (
            f"the oneDNN extension is not built for this source and jaxlib ({path.name}): "
            "run `make install` or `python -m cnnx.backends.cpu.onednn build`"
        )
    if (why := _mismatch(path)) is not None:
        return None, why
    try:
        lib = ctypes.cdll.LoadLibrary(str(path))
        symbols = [getattr(lib, name) for name in (*TARGETS, MATMUL_TARGET, "cnnx_onednn_version")]
    except (OSError, AttributeError) as e:
        return None, f"the oneDNN extension {path} does not load: {e}"
    del symbols
    for name in (*TARGETS, MATMUL_TARGET):
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    lib.cnnx_onednn_version.restype = ctypes.c_char_p
    return lib, "oneDNN " + lib.cnnx_onednn_version().decode()


@functools.cache
def implementations(geometry: tuple[int, ...], dtype: str = "float32") -> tuple[str, str, str]:
    """oneDNN's implementation names for a convolution's three passes.

    Args:
      geometry: (n, h, w, c, oh, ow, o, kh, kw, groups, sh, sw, pad_top, pad_left,
        pad_bottom, pad_right, dh, dw), dilations as XLA counts them (1 = dense).
      dtype: 'float32' or 'bfloat16'.

    Returns:
      (forward, input gradient, weight gradient), e.g. ("brgconv:avx512_core", ...); a
      pass oneDNN cannot do reads "unsupported: <oneDNN's message>".
    """
    lib = _load()[0]
    if lib is None:
        raise OneDNNUnavailable(status())
    values = (ctypes.c_int64 * 18)(*geometry)
    names = []
    for op in range(3):
        out = ctypes.create_string_buffer(256)
        code = lib.cnnx_onednn_implementation(values, dtype == "bfloat16", op, out, len(out))
        names.append(out.value.decode() if code == 0 else f"unsupported: {out.value.decode()}")
    return tuple(names)


@functools.cache
def matmul_implementation(
    m: int, k: int, n: int, transpose_a: bool, transpose_b: bool, dtype: str = "float32"
) -> str:
    """oneDNN's implementation name for an (m x k) @ (k x n) product (operands transposed in
    memory as `transpose_*` say), e.g. "brg_matmul:avx512_core"; "unsupported: <message>" when
    it has none.

    Raises:
      OneDNNUnavailable: the extension is not built.
    """
    lib = _load()[0]
    if lib is None:
        raise OneDNNUnavailable(status())
    out = ctypes.create_string_buffer(256)
    code = lib.cnnx_onednn_matmul_implementation(
        ctypes.c_int64(m),
        ctypes.c_int64(k),
        ctypes.c_int64(n),
        int(transpose_a),
        int(transpose_b),
        dtype == "bfloat16",
        out,
        len(out),
    )
    name = out.value.decode()
    return name if code == 0 else f"unsupported: {name}"


def available() -> bool:
    """Whether the extension is built and loaded (its FFI targets registered)."""
    return _load()[0] is not None


def status() -> str:
    """One line: which oneDNN is loaded, or why none is."""
    return _load()[1]


def _decision() -> tuple[bool, str]:
    """(whether convolutions traced now go to oneDNN, why) under the switch.

    Raises:
      OneDNNUnavailable: `CNNX_ONEDNN=on` and the extension is not built or does not load,
        or JAX's default backend is not the CPU.
    """
    mode = switches.onednn()
    if mode == "off":
        return False, f"{SWITCH}=off"
    if mode == "on":
        if not available():
            raise OneDNNUnavailable(f"{SWITCH}=on, but {status()}")
        if jax.default_backend() != "cpu":
            raise OneDNNUnavailable(
                f"{SWITCH}=on, but JAX's default backend is {jax.default_backend()!r}: oneDNN "
                f"convolutions run on the CPU only (unset {SWITCH} or set it to auto)"
            )
        return True, f"{SWITCH}=on"
    if not available():
        return False, status()
    if not cpu.enabled() or jax.default_backend() != "cpu":
        return False, f"{switches.CPU_GRADS.name}=xla or not on the CPU"
    if jax.device_count() > 1:
        return False, f"{jax.device_count()} devices; {SWITCH}=auto uses oneDNN with one"
    return True, f"{SWITCH}=auto"


def wanted() -> bool:
    """Whether convolutions traced now go to oneDNN (see the module docstring's switch).

    Raises:
      OneDNNUnavailable: `CNNX_ONEDNN=on` and the extension is not built or does not load,
        or JAX's default backend is not the CPU.
    """
    return _decision()[0]


def describe() -> str:
    """One line for a run's log: which convolutions a CPU program traced now runs, and why."""
    try:
        use, why = _decision()
    except OneDNNUnavailable:
        return f"XLA ({status()})"
    return f"{status()} ({why})" if use else f"XLA ({why})"


def takes(lhs, rhs, padding, lhs_dilation, preferred_element_type) -> bool:
    """Whether `conv` computes this NHWC/HWIO convolution (shapes and dtypes only)."""
    return (
        lhs.ndim == 4
        and rhs.ndim == 4
        and lhs.dtype == rhs.dtype
        and str(lhs.dtype) in _SUPPORTED_DTYPES
        and preferred_element_type is None
        and all(d == 1 for d in (lhs_dilation or ()))
        and (isinstance(padding, str) or all(lo >= 0 and hi >= 0 for lo, hi in padding))
        and min(lhs.shape) > 0
        and min(rhs.shape) > 0
    )


# oneDNN's own kernels (JIT-generated, brgemm-based); its fallbacks ("gemm:jit", "ref:any") are
# slower than XLA, and its im2col GEMM path crashed on unusual paddings of tiny inputs.
_FAST_IMPLEMENTATIONS = ("jit", "brg", "brdgmm")


def fast(lhs, rhs, window_strides, padding, rhs_dilation, feature_group_count) -> bool:
    """Whether oneDNN has its own fast kernel for all three passes of this convolution.

    Same arguments as `conv`; shapes only. Raises OneDNNUnavailable when not built.
    """
    strides, pads, dilation = _geometry_args(lhs, rhs, window_strides, padding, rhs_dilation)
    kernel = [(k - 1) * d for k, d in zip(rhs.shape[:2], dilation)]
    if any(lo > k or hi > k for (lo, hi), k in zip(pads, kernel)):
        return False  # padding wider than the kernel: no model does it
    out = _output_shape(lhs, rhs, strides, pads, dilation)
    geometry = (
        *lhs.shape,
        out[1],
        out[2],
        rhs.shape[3],
        *rhs.shape[:2],
        int(feature_group_count),
        *strides,
        pads[0][0],
        pads[1][0],
        pads[0][1],
        pads[1][1],
        *dilation,
    )
    names = implementations(geometry, str(lhs.dtype))
    return all(name.startswith(_FAST_IMPLEMENTATIONS) for name in names)


def _geometry_args(lhs, rhs, window_strides, padding, rhs_dilation):
    """(strides, ((top, bottom), (left, right)), dilation) as hashable int tuples."""
    strides = tuple(int(s) for s in window_strides)
    dilation = tuple(int(d) for d in (rhs_dilation or (1, 1)))
    if isinstance(padding, str):
        kernel = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation)]
        padding = lax.padtype_to_pads(lhs.shape[1:3], kernel, strides, padding)
    return strides, tuple((int(lo), int(hi)) for lo, hi in padding), dilation


def conv(lhs, rhs, window_strides, padding, rhs_dilation=None, feature_group_count=1):
    """An NHWC x HWIO convolution by oneDNN, differentiable in both operands.

    Args:
      lhs: input (N, H, W, C), float32 or bfloat16.
      rhs: kernel (KH, KW, C / feature_group_count, O), lhs's dtype; output channels
        group-major, as `lax.conv_general_dilated` and Flax lay them out.
      window_strides: (sh, sw).
      padding: 'SAME', 'VALID' or ((top, bottom), (left, right)), non-negative.
      rhs_dilation: (dh, dw), 1 for a dense kernel.
      feature_group_count: groups (C for depthwise).

    Returns:
      (N, Ho, Wo, O) in lhs's dtype, equal to `lax.conv_general_dilated(..., ("NHWC", "HWIO",
      "NHWC"))` to float rounding.

    Raises:
      OneDNNUnavailable: the extension is not built (check `available()` first).
    """
    if not available():
        raise OneDNNUnavailable(status())
    strides, pads, dilation = _geometry_args(lhs, rhs, window_strides, padding, rhs_dilation)
    return _conv(lhs, rhs, strides, pads, dilation, int(feature_group_count))


def _attributes(strides, pads, dilation, groups) -> dict:
    return dict(
        strides=np.asarray(strides, np.int64),
        padding_lo=np.asarray([lo for lo, _ in pads], np.int64),
        padding_hi=np.asarray([hi for _, hi in pads], np.int64),
        dilation=np.asarray(dilation, np.int64),
        groups=np.int64(groups),
    )


def _call(target: str, result_shape, dtype, a, b, attributes):
    out = jax.ShapeDtypeStruct(result_shape, dtype)
    return jax.ffi.ffi_call(target, out, vmap_method="sequential")(a, b, **attributes)


def _output_shape(lhs, rhs, strides, pads, dilation):
    n, h, w, _ = lhs.shape
    kh, kw, _, o = rhs.shape
    sizes = [
        (size + lo + hi - ((k - 1) * d + 1)) // s + 1
        for size, (lo, hi), k, d, s in zip((h, w), pads, (kh, kw), dilation, strides)
    ]
    return (n, *sizes, o)


def _forward(lhs, rhs, strides, pads, dilation, groups):
    attributes = _attributes(strides, pads, dilation, groups)
    shape = _output_shape(lhs, rhs, strides, pads, dilation)
    return _call(TARGETS[0], shape, lhs.dtype, lhs, rhs, attributes)


def _backward(strides, pads, dilation, groups, residuals, dy):
    lhs, rhs = residuals
    attributes = _attributes(strides, pads, dilation, groups)
    dy = dy.astype(lhs.dtype)
    dx = _call(TARGETS[1], lhs.shape, lhs.dtype, dy, rhs, attributes)
    dw = _call(TARGETS[2], rhs.shape, rhs.dtype, lhs, dy, attributes)
    return dx, dw


# (lhs, rhs, strides, pads, dilation, groups), the last four hashable tuples / int.
_conv = jax.custom_vjp(_forward, nondiff_argnums=(2, 3, 4, 5))
_conv.defvjp(lambda *args: (_forward(*args), args[:2]), _backward)


def main(argv=None) -> int:
    """`python -m cnnx.backends.cpu.onednn build|status`."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        try:
            build()
        except BuildError as e:
            print(f"oneDNN extension not built: {e}", file=sys.stderr)
            return 1
        return 0
    if args == ["status"]:
        print(status())
        return 0 if available() else 1
    print("usage: python -m cnnx.backends.cpu.onednn build|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
