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
  `infer_ratio`) is the median over pairs of the two runs of a pair, not a ratio of
  medians taken minutes apart.
* **rounds**: `ModelBenchmark.run_round` times `repeats` such pairs; a result over several
  rounds pools the times for images/s and reports each ratio as the median of the rounds'
  ratios, with one ratio per round (`*_ratio_rounds`) for its spread (`cnnx.analysis.rounds`).
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


class ModelBenchmark:
    """A registered model ready to time in rounds (see the module docstring).

    Construction compiles the train and inference steps (and the conv ceiling's
    convolutions); each `run_round` times `repeats` interleaved runs of each kind after
    `warmup` untimed ones, alternating with the companions; `result` summarises all rounds.
    `scripts/benchmark.py --rounds=N` holds every model at once and runs their rounds in
    turn, so that one model's rounds lie minutes apart.

    companions: other implementations to time alongside, by label (`torch_speed.TorchRunner`
      in NCHW and channels-last: objects with `train_once()` and `infer_once()`). Their runs
      alternate with ours (`time_interleaved`); the result gains `companions`: per label,
      `train_ips` / `infer_ips`, `train_ratio` / `infer_ratio` (the median over rounds of each
      round's paired ratio, its time / ours: above 1, cnnx is faster) and
      `train_ratio_rounds` / `infer_ratio_rounds` (one paired ratio per round).
    """

    def __init__(
        self,
        name: str,
        batch: int,
        resolution: int | None = None,
        dtype: str = "float32",
        conv_ceiling_too: bool = True,
        seed: int = 0,
        companions: dict | None = None,
    ):
        from cnnx import models

        spec = models.get_spec(name)
        r = resolution or spec.resolution
        shape = (batch, r, r, spec.in_chans)
        model = models.create(name, dtype=DTYPES[dtype])
        rng = np.random.default_rng(seed)
        images = rng.standard_normal(shape, np.float32)
        labels = rng.integers(0, spec.num_classes, (batch,)).astype(np.int32)
        self.name, self.batch, self.resolution, self.dtype = name, batch, r, dtype
        self.flops = model_flops(model, shape)  # (inference, train step)

        state, step, batch_sharding, replicated, self.init_s = _train_setup(
            model, shape, spec.num_classes
        )
        data = jax.device_put({"image": images, "label": labels}, batch_sharding)
        key = jax.device_put(jax.random.PRNGKey(seed), replicated)
        t = time.perf_counter()
        train = step.lower(state, data, key).compile()
        self.train_compile_s = time.perf_counter() - t
        self.train_mem = memory.of_compiled(train)
        self.params = int(sum(np.prod(p.shape) for p in jax.tree.leaves(state.params)))
        # A copy: the train steps donate (and so delete) the state's own buffers.
        variables = jax.tree.map(jnp.copy, state.eval_variables())
        infer = jax.jit(lambda v, x: model.apply(v, x, train=False))
        t = time.perf_counter()
        infer = infer.lower(variables, data["image"]).compile()
        self.infer_compile_s = time.perf_counter() - t
        self.infer_mem = memory.of_compiled(infer)
        self.ceiling = ConvCeiling(model, shape, DTYPES[dtype]) if conv_ceiling_too else None
        self.companions = companions or {}
        holder = {"state": state}

        def train_once():  # the state is donated: each step consumes the previous one
            holder["state"] = jax.block_until_ready(train(holder["state"], data, key))[0]

        self._ours = {"train": train_once, "infer": lambda: infer(variables, data["image"])}
        self.rounds: list[dict] = []  # per round: {"train": times, "infer": times}

    def run_round(self, warmup: int = 2, repeats: int = 5) -> None:
        """One round: the train runs interleaved (ours, companions', a conv pass), then the
        inference runs; appends {'train': {label: seconds}, 'infer': ...} to `rounds`."""
        times = {}
        for kind in ("train", "infer"):
            runs = {"ours": self._ours[kind]}
            for label, companion in self.companions.items():
                runs[label] = getattr(companion, f"{kind}_once")
            if self.ceiling is not None:
                runs["convs"] = functools.partial(self.ceiling.run_pass, kind)
            times[kind] = time_interleaved(runs, warmup, repeats)
        self.rounds.append(times)

    def _pooled(self, kind: str, label: str) -> list[float]:
        return [t for r in self.rounds for t in r[kind][label]]

    def _per_round(self, kind: str, label: str, ours_work=1.0, theirs_work=1.0) -> list[float]:
        """Each round's paired ratio of `label`'s seconds per `theirs_work` to ours per work."""
        return [
            paired_ratio(
                [t / ours_work for t in r[kind]["ours"]],
                [t / theirs_work for t in r[kind][label]],
            )
            for r in self.rounds
        ]

    def result(self) -> dict:
        """The figures over all rounds so far (see the module docstring).

        Raises:
          ValueError: no round has run.
        """
        if not self.rounds:
            raise ValueError(f"{self.name}: result() before any run_round()")
        fwd_flops, train_flops = self.flops
        train = _stats(self._pooled("train", "ours"), self.batch)
        inference = _stats(self._pooled("infer", "ours"), self.batch)
        result = {
            "model": self.name,
            "batch": self.batch,
            "resolution": self.resolution,
            "dtype": self.dtype,
            "params": self.params,
            "gflop_per_image_inference": fwd_flops / self.batch / 1e9,
            "gflop_per_step_train": train_flops / 1e9,
            "init_s": self.init_s,
            "train_compile_s": self.train_compile_s,
            "infer_compile_s": self.infer_compile_s,
            "train_ips": train["per_s"],
            "train_ips_best": self.batch / train["best_s"],
            "train_step_ms": 1e3 * train["median_s"],
            "infer_ips": inference["per_s"],
            "infer_ips_best": self.batch / inference["best_s"],
            "train_gflops": train_flops / train["median_s"] / 1e9,
            "infer_gflops": fwd_flops / inference["median_s"] / 1e9,
            "train_peak_mb": self.train_mem.peak / 2**20,
            "infer_peak_mb": self.infer_mem.peak / 2**20,
            "repeats": len(self.rounds[0]["train"]["ours"]),
            "rounds": len(self.rounds),
            "companions": {},
        }
        for label in self.companions:
            figures = {}
            for kind in ("train", "infer"):
                per_round = self._per_round(kind, label)
                figures[f"{kind}_ips"] = _stats(self._pooled(kind, label), self.batch)["per_s"]
                figures[f"{kind}_ratio"] = statistics.median(per_round)
                figures[f"{kind}_ratio_rounds"] = per_round
            result["companions"][label] = figures
        if self.ceiling is not None:
            conv_train_s = statistics.median(self._pooled("train", "convs"))
            conv_infer_s = statistics.median(self._pooled("infer", "convs"))
            flops = self.ceiling.flops
            result["conv_ceiling_train_gflops"] = flops["train"] / conv_train_s / 1e9
            result["conv_ceiling_infer_gflops"] = flops["infer"] / conv_infer_s / 1e9
            result["conv_time_train_ms"] = 1e3 * conv_train_s
            result["conv_layers"] = self.ceiling.layers()
            # achieved / ceiling GFLOP/s, round by round (a step and a conv pass per pair).
            for kind, work in (("train", train_flops), ("infer", fwd_flops)):
                per_round = self._per_round(kind, "convs", work, flops[kind])
                result[f"{kind}_fraction_of_conv"] = statistics.median(per_round)
        return result
