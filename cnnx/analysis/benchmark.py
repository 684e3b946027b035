"""Speed of the real training step, against two ceilings measured in the same process.

What each figure measures (`scripts/benchmark.py` prints and saves them):

* **train images/s**: the trainer's step (`cnnx.analysis.reference_steps.train_setup`, built
  by `cnnx.train.steps.make_train_step` as in training: forward, softmax cross entropy,
  backward, the config schema's default optimizer, SGD with momentum 0.9 and weight decay
  1e-4 under a cosine schedule, metrics) on a one-device mesh, state donated.
  batch / median seconds of `repeats` steps after `warmup` steps, each step waited for
  (`block_until_ready`).
* **inference images/s**: the eval-mode forward pass (`model.apply(..., train=False)`).
* **compile s**: `jit(...).lower(...).compile()` of each step; **init s**: the trainer's
  jitted initialisation (compile + run), part of the time to the first step.
* **FLOPs**: 2 x the multiply-accumulates of convolutions and matrix products
  (`cnnx.analysis.flops`; norms, activations and pooling are not counted). A training step
  counts 3 x the forward FLOPs (forward, input gradient, weight gradient) less the input
  gradient of layers fed by the image itself, which is never computed.
* **achieved GFLOP/s**: those FLOPs / the median step time.
* **matmul ceiling**: GFLOP/s of one large square matrix product (`matmul_size`², the
  model's compute dtype), median of the timed runs: what this machine's matrix unit delivers
  through XLA.
* **conv ceiling**: every convolution of the model (the exact `conv_general_dilated`
  equations of its forward pass, shapes, dtypes and settings included) run alone, forward +
  both gradients (weight gradient only for a layer fed by the image), through the
  implementation the model uses (`cnnx.backends.conv_general_dilated` where its gradient is
  cnnx's, XLA's otherwise), on random inputs held in memory. A pass runs each of them as many
  times as the model does; GFLOP/s = their FLOPs / the median pass time. It is the speed the
  step would reach if everything but the convolutions were free; its forward-only
  counterpart is the ceiling for inference.
* **interleaving**: the timed runs alternate, one per round with the order rotating: a train
  step, a convolution pass and (`--vs_torch`) the torch step; then the same for inference. A
  shared host's speed drifts over minutes, so each ratio (`fraction_of_conv`, `train_ratio`,
  `infer_ratio`) is the median over rounds of the two runs of that round, not a ratio of
  medians taken minutes apart.
"""

import functools
import inspect
import statistics
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from cnnx import backends
from cnnx.analysis import flops as flops_lib
from cnnx.analysis import memory, reference_steps, speed
from cnnx.analysis.speed import time_interleaved
from cnnx.analysis.trace import trace

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _stats(times: Sequence[float], work: float) -> dict:
    """Median and best seconds of timed runs, and `work` per median second."""
    med = statistics.median(times)
    return {"median_s": med, "best_s": min(times), "per_s": work / med, "runs": len(times)}


def paired_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """Median over rounds of theirs / ours seconds: our speed relative to theirs."""
    return statistics.median(t / o for o, t in zip(ours, theirs, strict=True))


def matmul_ceiling(dtype=jnp.float32, size: int = 2048, warmup: int = 2, repeats: int = 5):
    """GFLOP/s of a (size x size) @ (size x size) product in `dtype` (f32 accumulation)."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((size, size), np.float32)).astype(dtype)
    b = jnp.asarray(rng.standard_normal((size, size), np.float32)).astype(dtype)
    fn = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    times = speed.time_runs(fn, (a, b), warmup, repeats)
    return _stats(times, 2.0 * size**3 / 1e9)["per_s"]


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, jcore.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jcore.Jaxpr):
                yield v


def _is_depthwise(lhs_shape, rhs_shape, params) -> bool:
    dn = params["dimension_numbers"]
    groups = params["feature_group_count"]
    return groups > 1 and lhs_shape[dn.lhs_spec[1]] == groups and rhs_shape[dn.rhs_spec[1]] == 1


def _collect_convs(jaxpr, image_vars: set, repeat: int, found: dict, custom=False) -> None:
    """Adds every conv_general_dilated equation of `jaxpr` (recursively) to `found`.

    `custom`: inside a custom_vjp (a platform route's own gradient, e.g. the CPU's 1x1).
    """
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        ins = [v for v in eqn.invars if not isinstance(v, jcore.Literal)]
        if name in ("convert_element_type", "copy") and ins and ins[0] in image_vars:
            image_vars.add(eqn.outvars[0])
        if name == "conv_general_dilated":
            lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
            params = dict(eqn.params)
            key = (
                lhs.shape,
                str(lhs.dtype),
                rhs.shape,
                str(rhs.dtype),
                repr(sorted(params.items())),
            )
            entry = found.setdefault(
                key,
                {
                    "lhs": jax.ShapeDtypeStruct(lhs.shape, lhs.dtype),
                    "rhs": jax.ShapeDtypeStruct(rhs.shape, rhs.dtype),
                    "params": params,
                    "out": eqn.outvars[0].aval.shape,
                    "count": 0,
                    "first": eqn.invars[0] in image_vars,
                    # Depthwise ones traced as conv equations (`lax_only`) but run by the
                    # platform's route in the model (the CPU's shifted multiply-adds).
                    "custom": custom or _is_depthwise(lhs.shape, rhs.shape, params),
                },
            )
            entry["count"] += repeat
            continue
        times = int(eqn.params["length"]) if name == "scan" else 1
        for sub in _sub_jaxprs(eqn):
            inner = set()
            if len(sub.invars) == len(eqn.invars):
                inner = {s for s, o in zip(sub.invars, eqn.invars) if o in image_vars}
            inside = custom or name.startswith("custom_vjp")
            _collect_convs(sub, inner, repeat * times, found, inside)


def model_convolutions(model, input_shape: Sequence[int], dtype=jnp.float32) -> list[dict]:
    """The distinct convolutions of a model's eval forward pass, with how often each runs.

    Returns:
      Dicts with 'lhs' / 'rhs' (`ShapeDtypeStruct`s), 'params' (the primitive's), 'out' (the
      output shape), 'count', 'first' (fed by the image: no input gradient), 'custom' (inside
      a custom gradient, or depthwise: `cnnx.backends.conv_general_dilated`, timed through
      it) and 'macs' (of one call).
    """
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
    with backends.lax_only():  # depthwise ones as conv equations too
        closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    image = closed.jaxpr.invars[-1]
    found: dict = {}
    _collect_convs(closed.jaxpr, {image}, 1, found)
    convs = list(found.values())
    for c in convs:
        out_features = c["rhs"].shape[c["params"]["dimension_numbers"].rhs_spec[0]]
        c["macs"] = int(np.prod(c["out"])) * int(np.prod(c["rhs"].shape)) // out_features
    return convs


def _conv_fns(case):
    params = case["params"]
    if case["custom"]:  # the model's convolution is cnnx's (same dispatch, same gradient)
        names = inspect.signature(backends.conv_general_dilated).parameters
        conv = functools.partial(
            backends.conv_general_dilated, **{k: v for k, v in params.items() if k in names}
        )
    else:
        conv = functools.partial(lax.conv_general_dilated_p.bind, **params)

    def forward(x, w):
        return conv(x, w)

    def forward_backward(x, w, dy):
        if case["first"]:
            y, vjp = jax.vjp(lambda w: conv(x, w), w)
            return y, vjp(dy)
        y, vjp = jax.vjp(conv, x, w)
        return y, vjp(dy)

    return jax.jit(forward), jax.jit(forward_backward)


class ConvCeiling:
    """The model's convolutions alone, ready to time (see the module docstring).

    Each distinct convolution (shapes and settings) is compiled once on random inputs held in
    memory. A pass runs every convolution of the model, each distinct one `count` times, one
    call at a time, so a pass takes as long as the model's convolutions would if nothing else
    cost anything; `benchmark_model` alternates passes with its own steps
    (`time_interleaved`), so the ceiling and the step see the same host load.
    """

    def __init__(self, model, input_shape, dtype=jnp.float32):
        rng = np.random.default_rng(0)
        self.cases = []
        self.flops = {"train": 0.0, "infer": 0.0}
        for case in model_convolutions(model, input_shape, dtype):
            lhs, rhs = case["lhs"], case["rhs"]
            x = jnp.asarray(rng.standard_normal(lhs.shape, np.float32)).astype(lhs.dtype)
            w = jnp.asarray(0.05 * rng.standard_normal(rhs.shape, np.float32)).astype(rhs.dtype)
            dy = jnp.asarray(rng.standard_normal(case["out"], np.float32)).astype(lhs.dtype)
            fwd, fwd_bwd = _conv_fns(case)
            flops = 2.0 * case["macs"]
            passes = 2 if case["first"] else 3
            self.flops["infer"] += case["count"] * flops
            self.flops["train"] += case["count"] * passes * flops
            self.cases.append(
                {
                    **case,
                    "flops_train": passes * flops,
                    "infer": (fwd.lower(x, w).compile(), (x, w)),
                    "train": (fwd_bwd.lower(x, w, dy).compile(), (x, w, dy)),
                    "times": {"train": [], "infer": []},
                }
            )

    def run_pass(self, kind: str) -> None:
        """Every convolution of the model once: forward + gradients ('train') or 'infer'."""
        for case in self.cases:
            fn, args = case[kind]
            for _ in range(case["count"]):
                t = time.perf_counter()
                jax.block_until_ready(fn(*args))
                case["times"][kind].append(time.perf_counter() - t)

    def layers(self) -> list[dict]:
        """Per distinct convolution: shapes, count, median forward and train milliseconds."""
        rows = []
        for case in self.cases:
            ti = statistics.median(case["times"]["infer"]) if case["times"]["infer"] else None
            tt = statistics.median(case["times"]["train"]) if case["times"]["train"] else None
            rows.append(
                {
                    "input": list(case["lhs"].shape),
                    "kernel": list(case["rhs"].shape),
                    "strides": list(case["params"]["window_strides"]),
                    "groups": int(case["params"]["feature_group_count"]),
                    "count": case["count"],
                    "forward_ms": 1e3 * ti if ti else None,
                    "train_ms": 1e3 * tt if tt else None,
                    "train_gflops": case["flops_train"] / tt / 1e9 if tt else None,
                }
            )
        return rows


def model_flops(model, input_shape: Sequence[int]) -> tuple[float, float]:
    """(inference FLOPs, training-step FLOPs) of one batch (see the module docstring)."""
    tr = trace(model, input_shape)
    kinds = flops_lib.MAC_KINDS
    forward = 2.0 * sum(layer.macs for layer in tr.layers if layer.kind in kinds)
    image = tuple(int(d) for d in input_shape[1:])
    fed_by_image = sum(
        2.0 * layer.macs
        for layer in tr.layers
        if layer.kind in kinds and tuple(layer.in_shape) == image and layer.depth == 1
    )
    return forward, 3.0 * forward - fed_by_image


def _train_setup(model, input_shape, num_classes: int):
    """The trainer's state and jitted step for `model` on a one-device mesh
    (`reference_steps.train_setup`), the state initialised as the trainer initialises it."""
    from cnnx.train.state import jit_initialize

    setup = reference_steps.train_setup(model, input_shape, num_classes)
    t = time.perf_counter()
    state = jit_initialize(setup.create, jax.random.PRNGKey(0), setup.state_shardings)
    state = jax.block_until_ready(state)
    init_s = time.perf_counter() - t
    return state, setup.step, setup.batch_sharding, setup.replicated, init_s


def benchmark_model(
    name: str,
    batch: int,
    resolution: int | None = None,
    dtype: str = "float32",
    warmup: int = 2,
    repeats: int = 5,
    conv_ceiling_too: bool = True,
    seed: int = 0,
    companions: dict | None = None,
) -> dict:
    """Inference and train-step speed of a registered model (see the module docstring).

    companions: other implementations to time alongside, by label (`torch_speed.TorchRunner`
      in NCHW and channels-last: objects with `train_once()` and `infer_once()`). Their runs
      alternate with ours (`time_interleaved`); the result gains `companions`: per label,
      `train_ips` / `infer_ips` and `train_ratio` / `infer_ratio`, the median over rounds of
      its time / ours (above 1: cnnx is faster).
    """
    from cnnx import models

    spec = models.get_spec(name)
    r = resolution or spec.resolution
    shape = (batch, r, r, spec.in_chans)
    model = models.create(name, dtype=DTYPES[dtype])
    rng = np.random.default_rng(seed)
    images = rng.standard_normal(shape, np.float32)
    labels = rng.integers(0, spec.num_classes, (batch,)).astype(np.int32)
    fwd_flops, train_flops = model_flops(model, shape)

    state, step, batch_sharding, replicated, init_s = _train_setup(model, shape, spec.num_classes)
    data = jax.device_put({"image": images, "label": labels}, batch_sharding)
    key = jax.device_put(jax.random.PRNGKey(seed), replicated)
    t = time.perf_counter()
    compiled = step.lower(state, data, key).compile()
    train_compile = time.perf_counter() - t
    train_mem = memory.of_compiled(compiled)

    def run(state):
        return jax.block_until_ready(compiled(state, data, key))[0]

    ceiling = ConvCeiling(model, shape, DTYPES[dtype]) if conv_ceiling_too else None
    holder = {"state": state}

    def train_once():  # the state is donated: each step consumes the previous one
        holder["state"] = run(holder["state"])

    companions = companions or {}
    runs = {"ours": train_once}
    for label, companion in companions.items():
        runs[label] = companion.train_once
    if ceiling is not None:
        runs["convs"] = lambda: ceiling.run_pass("train")
    train_times = time_interleaved(runs, warmup, repeats)
    state = holder["state"]
    train = _stats(train_times["ours"], batch)

    variables = state.eval_variables()
    infer = jax.jit(lambda v, x: model.apply(v, x, train=False))
    t = time.perf_counter()
    infer_compiled = infer.lower(variables, data["image"]).compile()
    infer_compile = time.perf_counter() - t
    infer_mem = memory.of_compiled(infer_compiled)
    runs = {"ours": lambda: infer_compiled(variables, data["image"])}
    for label, companion in companions.items():
        runs[label] = companion.infer_once
    if ceiling is not None:
        runs["convs"] = lambda: ceiling.run_pass("infer")
    infer_times = time_interleaved(runs, warmup, repeats)
    inference = _stats(infer_times["ours"], batch)

    result = {
        "model": name,
        "batch": batch,
        "resolution": r,
        "dtype": dtype,
        "params": int(sum(np.prod(p.shape) for p in jax.tree.leaves(state.params))),
        "gflop_per_image_inference": fwd_flops / batch / 1e9,
        "gflop_per_step_train": train_flops / 1e9,
        "init_s": init_s,
        "train_compile_s": train_compile,
        "infer_compile_s": infer_compile,
        "train_ips": train["per_s"],
        "train_ips_best": batch / train["best_s"],
        "train_step_ms": 1e3 * train["median_s"],
        "infer_ips": inference["per_s"],
        "infer_ips_best": batch / inference["best_s"],
        "train_gflops": train_flops / train["median_s"] / 1e9,
        "infer_gflops": fwd_flops / inference["median_s"] / 1e9,
        "train_peak_mb": train_mem.peak / 2**20,
        "infer_peak_mb": infer_mem.peak / 2**20,
        "repeats": repeats,
    }
    result["companions"] = {
        label: {
            "train_ips": _stats(train_times[label], batch)["per_s"],
            "infer_ips": _stats(infer_times[label], batch)["per_s"],
            "train_ratio": paired_ratio(train_times["ours"], train_times[label]),
            "infer_ratio": paired_ratio(infer_times["ours"], infer_times[label]),
        }
        for label in companions
    }
    if ceiling is not None:
        conv_train_s = statistics.median(train_times["convs"])
        conv_infer_s = statistics.median(infer_times["convs"])
        result["conv_ceiling_train_gflops"] = ceiling.flops["train"] / conv_train_s / 1e9
        result["conv_ceiling_infer_gflops"] = ceiling.flops["infer"] / conv_infer_s / 1e9
        result["conv_time_train_ms"] = 1e3 * conv_train_s
        result["conv_layers"] = ceiling.layers()
        # achieved / ceiling GFLOP/s, round by round (a step and a conv pass per round).
        result["train_fraction_of_conv"] = paired_ratio(
            [t / train_flops for t in train_times["ours"]],
            [t / ceiling.flops["train"] for t in train_times["convs"]],
        )
        result["infer_fraction_of_conv"] = paired_ratio(
            [t / fwd_flops for t in infer_times["ours"]],
            [t / ceiling.flops["infer"] for t in infer_times["convs"]],
        )
    return result


# The grouped layers of issue 20's table: depthwise (MobileNet v2, EfficientNet, ConvNeXt
# shapes) and one ResNeXt-50 32x4d layer: (height = width, channels, kernel, stride, groups).
DEPTHWISE_LAYERS = (
    (112, 32, 3, 1, 32),
    (56, 144, 3, 1, 144),
    (28, 240, 5, 1, 240),
    (56, 96, 7, 1, 96),
    (112, 96, 3, 2, 96),
    (56, 128, 3, 1, 32),
)
# XLA's grouped (not depthwise) convolution takes minutes per training step on the ResNeXt
# layer (118 s measured); it is timed only for depthwise layers.


def depthwise_layers(
    batch: int = 8, layers=DEPTHWISE_LAYERS, warmup: int = 2, repeats: int = 7, torch_too=True
) -> list[dict]:
    """One grouped convolution (torch padding) at a time: XLA's, the platform's own, torch's.

    XLA: `lax.conv_general_dilated(feature_group_count=groups)` (depthwise layers only); the
    platform's own convolutions by name (`cnnx.backends.conv_kernels()`; on the CPU cnnx:
    cnnx's depthwise formulation on XLA, depthwise layers only, and onednn: oneDNN's, when
    the extension is built); torch: `nn.Conv2d(groups=...)` in channels-last. Forward, and
    forward + input and weight gradients, each jitted (torch: eager), timed in alternation
    (`time_interleaved`), float32.

    Returns:
      Per layer: 'layer' ('HxWxC kxk /s [gG]'), and '{xla,cnnx,onednn,torch}_{fwd,train}_ms'
      (medians) for the implementations timed.
    """
    kernels = backends.conv_kernels()
    rows = []
    rng = np.random.default_rng(0)
    for size, channels, k, stride, groups in layers:
        pad = [((k - 1) // 2, (k - 1) // 2)] * 2
        x = jnp.asarray(rng.standard_normal((batch, size, size, channels), np.float32))
        w = 0.1 * rng.standard_normal((k, k, channels // groups, channels), np.float32)
        w = jnp.asarray(w)

        def xla(x, w, stride=stride, pad=pad, groups=groups):
            dn = ("NHWC", "HWIO", "NHWC")
            return lax.conv_general_dilated(
                x, w, (stride, stride), pad, dimension_numbers=dn, feature_group_count=groups
            )

        candidates = {"xla": xla} if groups == channels else {}
        for label, kernel in kernels.items():
            if groups == channels or not kernel.depthwise_only:
                candidates[label] = functools.partial(
                    _kernel, kernel.fn, strides=(stride, stride), padding=pad, groups=groups
                )
        dy = jnp.ones(jax.eval_shape(xla, x, w).shape, jnp.float32)
        runs = {}
        for label, conv in candidates.items():
            fwd = jax.jit(conv)
            train = jax.jit(functools.partial(_forward_backward, conv))
            runs[f"{label}_fwd"] = functools.partial(fwd, x, w)
            runs[f"{label}_train"] = functools.partial(train, x, w, dy)
        if torch_too:
            runs.update(_torch_grouped(x, w, stride, (k - 1) // 2, groups))
        row = {"layer": f"{size}x{size}x{channels} {k}x{k} /{stride}"}
        if groups != channels:
            row["layer"] += f" g{groups}"
        for kind in ("fwd", "train"):
            chosen = {name: run for name, run in runs.items() if name.endswith(kind)}
            times = time_interleaved(chosen, warmup, repeats)
            row.update({f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()})
        rows.append(row)
    return rows


def _kernel(fn, x, w, *, strides, padding, groups):
    return fn(x, w, strides, padding, groups)


def _forward_backward(conv, x, w, dy):
    y, vjp = jax.vjp(conv, x, w)
    return y, vjp(dy)


def _torch_grouped(x, w, stride: int, pad: int, groups: int) -> dict:
    """torch's channels-last grouped convolution of the same x, w: forward and train runs."""
    import torch

    c = x.shape[-1]
    conv = torch.nn.Conv2d(c, w.shape[-1], w.shape[0], stride, pad, groups=groups, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.array(w).transpose(3, 2, 0, 1).copy()))
    conv = conv.to(memory_format=torch.channels_last)
    tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    tx = tx.contiguous(memory_format=torch.channels_last).requires_grad_()

    def forward():
        with torch.inference_mode():
            conv(tx)

    def train():
        tx.grad, conv.weight.grad = None, None
        out = conv(tx)
        out.backward(torch.ones_like(out))

    return {"torch_fwd": forward, "torch_train": train}
