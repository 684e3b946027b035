"""Layer-by-layer records of a model, read from its jaxpr (no compilation, no real arrays).

The model's eval-mode forward pass is traced with `jax.make_jaxpr` on abstract inputs
(`jax.ShapeDtypeStruct`), so even the largest model costs only a trace. Flax linen names each
module call in the jaxpr's name stack (`ResNet/stage1_block0/conv1/conv`), which ties every
equation to the module (and so to the parameters) that produced it. The walk records:

* `conv_general_dilated` -> a `conv` row (`dwconv` when every group has one input channel);
* `dot_general` with one operand computed from parameters only -> an `fc` row (dense layer);
  with both operands computed from the input -> a `matmul` row (attention products);
* `reduce_window_max` / `reduce_window_sum` -> `maxpool` / `avgpool` rows;
* sums/maxima over both spatial axes of an NHWC map -> a `gpool` row (global pooling).

Along the way each value carries (a) whether it depends on the input image, (b) the number of
weight layers (conv + fc) on the longest path from the input to it — the conventional
"depth" — with and without pooling layers counted, and (c) its receptive field (size, jump,
start) on the first spatial axis, following the input of the largest receptive field where
branches meet (the main path; a shortcut or a squeeze-excite gate never widens it).

Sub-jaxprs (jit, custom_jvp/vjp, remat, scan, cond) are walked recursively; a `scan` body's
rows are repeated `length` times.

Only the inference pass is traced: `apply(..., train=False)` with the variable shapes of
`eval_shape(init)`, so heads that run in training only (GoogLeNet's and Inception v3's
auxiliary classifiers, which `init` executes to create their parameters) add no rows, MACs,
depth or memory. Weights that are zero by construction count by their real connections: a
kernel assembled by scattering parameters into zeros (LeNet-5's partial C3 table) or
multiplied by a constant mask carries the fraction of its entries that can be non-zero
(`Info.density`), and a conv or dense layer's MACs are scaled by it.
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from cnnx import backends

GLOBAL = "global"  # receptive field of a value that has seen the whole image


@dataclasses.dataclass(frozen=True)
class RF:
    """Receptive field on one spatial axis, in input pixels.

    Attributes:
      size: pixels of the input that one output unit sees.
      jump: distance in input pixels between two adjacent output units (product of strides).
      start: input coordinate of the centre of the first output unit's field (pixel i has
        centre i; padding makes it negative).
    """

    size: int
    jump: int
    start: float

    def window(self, kernel: int, stride: int, pad_lo: int, dilation: int = 1) -> "RF":
        """The field after a conv/pool window of `kernel` taps, `stride`, and `pad_lo`."""
        k = (kernel - 1) * dilation + 1
        return RF(
            self.size + (k - 1) * self.jump,
            self.jump * stride,
            self.start + ((k - 1) / 2 - pad_lo) * self.jump,
        )


INPUT_RF = RF(1, 1, 0.0)


@dataclasses.dataclass
class Layer:
    """One row of the summary.

    Attributes:
      name: module path (`stage1_block0/conv1/conv`), or the enclosing module for functional
        layers such as pooling (`<root>` at the top level).
      kind: conv, dwconv, fc, matmul, maxpool, avgpool or gpool.
      in_shape, out_shape: shapes without the batch axis (NHWC for maps).
      kernel, stride, padding: window (kh, kw), strides (sh, sw), padding ((lo, hi), (lo, hi)).
      filters: output channels (conv) or units (fc).
      groups: feature groups of a convolution.
      macs: multiply-accumulates for the whole batch.
      out_bytes: bytes of the output for the whole batch.
      weights, biases: parameters of the row's module (filled by `attach_params`).
      rf: receptive field of the output (`RF`), GLOBAL, or None where it does not apply.
      depth: weight layers on the longest path from the input up to and including this one.
      repeat: how many times the row runs (rows inside a `scan`).
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[tuple[int, int], ...] | None = None
    filters: int | None = None
    groups: int = 1
    macs: int = 0
    out_bytes: int = 0
    weights: int = 0
    biases: int = 0
    rf: Any = None
    depth: int = 0
    repeat: int = 1


@dataclasses.dataclass(frozen=True)
class Info:
    """What the walk knows about one value."""

    data: bool = False  # depends on the input image
    depth: int = 0  # weight layers on the longest path from the input
    depth_pool: int = 0  # the same, counting pooling layers too
    rf: Any = None  # RF, GLOBAL, or None
    density: float = 1.0  # fraction of entries that can be non-zero (structural zeros)


CONST = Info()

# Primitives whose output has the zero pattern of their (first) input.
_SAME_PATTERN = frozenset(
    {
        "convert_element_type",
        "copy",
        "copy_p",
        "reshape",
        "transpose",
        "squeeze",
        "expand_dims",
        "broadcast_in_dim",
        "rev",
        "reduce_precision",
    }
)


@dataclasses.dataclass
class Trace:
    """The result of `trace`: rows, output depths and the parameter shapes."""

    layers: list[Layer]
    depth: int
    depth_pool: int
    params: Any
    batch: int
    input_shape: tuple[int, ...]
    training_only_params: int = 0  # parameters inference never reads (auxiliary heads)


_WEIGHTED = ("conv", "dwconv", "fc")


def _merge(infos: Sequence[Info], out_aval, in_avals) -> Info:
    """Info of an output computed from `infos` by an op without weights or windows."""
    data = [(i, a) for i, a in zip(infos, in_avals) if i.data]
    if not data:
        return CONST
    shape = getattr(out_aval, "shape", ())
    main = data
    if len(shape) == 4:
        # Follow inputs with the same spatial size (elementwise ops, norms, concatenation):
        # a broadcast gate (B, 1, 1, C), as in squeeze-excite, scales the main path but is
        # not on it, so neither its layers (depth) nor its field count.
        main = [(i, a) for i, a in data if len(a.shape) == 4 and a.shape[1:3] == shape[1:3]]
        main = main or data
    depth = max(i.depth for i, _ in main)
    depth_pool = max(i.depth_pool for i, _ in main)
    fields = [i.rf for i, _ in data if i.rf is not None]
    rf = GLOBAL if fields else None
    if len(shape) == 4:
        # Anything that reshapes the map (flatten, transpose, tokens) makes the field global.
        same = [i.rf for i, a in main if len(a.shape) == 4 and a.shape[1:3] == shape[1:3]]
        rfs = [r for r in same if isinstance(r, RF)]
        if rfs and GLOBAL not in same:
            rf = max(rfs, key=lambda r: r.size)
    return Info(True, depth, depth_pool, rf)


def _shape(aval) -> tuple[int, ...]:
    return tuple(int(d) for d in aval.shape)


def _itemsize(aval) -> int:
    return int(np.dtype(aval.dtype).itemsize)


class _Walker:
    def __init__(self, batch: int):
        self.batch = batch
        self.layers: list[Layer] = []

    def run(
        self, jaxpr, infos: Sequence[Info], prefix: str, repeat: int, consts: Sequence = ()
    ) -> list[Info]:
        env: dict[Any, Info] = {}

        def read(v):
            if isinstance(v, jcore.Literal):
                return CONST
            return env.get(v, CONST)

        for v, i in zip(jaxpr.invars, infos):
            env[v] = i
        for v in jaxpr.constvars:
            env[v] = CONST
        for v, value in zip(jaxpr.constvars, consts):
            env[v] = Info(density=_nonzero_fraction(value))
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            stack = str(eqn.source_info.name_stack)
            scope = "/".join(p for p in (prefix, stack) if p)
            outs = self.eqn(eqn, ins, scope, repeat)
            for v, i in zip(eqn.outvars, outs):
                env[v] = i
        return [read(v) for v in jaxpr.outvars]

    def eqn(self, eqn, ins: list[Info], scope: str, repeat: int) -> list[Info]:
        prim = eqn.primitive.name
        in_avals = [v.aval for v in eqn.invars]
        out_avals = [v.aval for v in eqn.outvars]
        if not any(i.data for i in ins):
            return self.constant(eqn, ins)
        if prim == "conv_general_dilated":
            return [self.conv(eqn, ins, scope, repeat)]
        if prim == "dot_general":
            return [self.dot(eqn, ins, scope, repeat)]
        if prim in ("reduce_window_max", "reduce_window_sum", "reduce_window"):
            return [self.pool(eqn, ins[0], scope, repeat)]
        if prim in ("reduce_sum", "reduce_max") and len(in_avals[0].shape) == 4:
            axes = set(eqn.params["axes"])
            if {1, 2} <= axes and 0 not in axes:
                return [self.global_pool(eqn, ins[0], scope, repeat)]
        if prim == "pad" and len(in_avals[0].shape) == 4 and isinstance(ins[0].rf, RF):
            lo = eqn.params["padding_config"][1][0]
            r = ins[0].rf
            return [dataclasses.replace(ins[0], rf=RF(r.size, r.jump, r.start - lo * r.jump))]
        if prim == "slice" and len(in_avals[0].shape) == 4 and isinstance(ins[0].rf, RF):
            start = eqn.params["start_indices"][1]
            step = (eqn.params["strides"] or (1, 1, 1, 1))[1]
            r = ins[0].rf
            rf = RF(r.size, r.jump * step, r.start + start * r.jump)
            return [dataclasses.replace(ins[0], rf=rf)]
        sub = self.subcall(eqn, ins, scope, repeat)
        if sub is not None:
            return sub
        return [_merge(ins, a, in_avals) for a in out_avals]

    def constant(self, eqn, ins: list[Info]) -> list[Info]:
        """Infos of values computed from parameters and constants only (their zero pattern)."""
        prim = eqn.primitive.name
        n = len(eqn.outvars)
        if prim == "broadcast_in_dim" and isinstance(eqn.invars[0], jcore.Literal):
            return [Info(density=float(np.any(eqn.invars[0].val != 0)))]
        if prim in _SAME_PATTERN:
            return [Info(density=ins[0].density)] * n
        if prim == "mul":
            return [Info(density=ins[0].density * ins[1].density)]
        if prim in ("scatter", "scatter-add", "scatter_add"):
            # Entries written by the updates plus those already non-zero in the operand.
            size = max(1, math.prod(_shape(eqn.outvars[0].aval)))
            written = math.prod(_shape(eqn.invars[2].aval)) * ins[2].density
            return [Info(density=min(1.0, (ins[0].density * size + written) / size))]
        if any(i.density < 1.0 for i in ins):
            sub = self.subcall(eqn, ins, "", 1)
            if sub is not None:
                return sub
        return [CONST] * n

    def subcall(self, eqn, ins, scope, repeat):
        p = eqn.params
        prim = eqn.primitive.name
        if prim == "scan":
            length, n_consts, n_carry = int(p["length"]), p["num_consts"], p["num_carry"]
            outs = self.run(p["jaxpr"].jaxpr, ins, scope, repeat * length)
            carry_in = ins[n_consts : n_consts + n_carry]
            carry = [_scan_carry(o, i, length) for o, i in zip(outs[:n_carry], carry_in)]
            return carry + outs[n_carry:]
        if prim == "cond":
            branch_outs = [self.run(b.jaxpr, ins[1:], scope, repeat) for b in p["branches"]]
            # Rows of every branch are kept; values take the deepest branch.
            return [max(o, key=lambda i: i.depth) for o in zip(*branch_outs)]
        for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
            if key in p:
                inner = p[key]
                inner = getattr(inner, "jaxpr", inner)
                if len(inner.invars) == len(ins):
                    return self.run(inner, ins, scope, repeat)
        return None

    def _layer(self, **kw) -> Layer:
        layer = Layer(**kw)
        self.layers.append(layer)
        return layer

    def conv(self, eqn, ins, scope, repeat) -> Info:
        p = eqn.params
        lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
        out = eqn.outvars[0].aval
        dn = p["dimension_numbers"]
        lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
        rshape = _shape(rhs)
        kernel = tuple(rshape[d] for d in rhs_spec[2:])
        cin_per_group = rshape[rhs_spec[1]]
        oshape = _shape(out)
        macs = int(np.prod(oshape)) * cin_per_group * int(np.prod(kernel))
        macs = round(macs * ins[1].density)  # taps that are zero by construction do no work
        groups = int(p["feature_group_count"])
        x_info = ins[0]
        depth, depth_pool = x_info.depth + 1, x_info.depth_pool + 1
        rf = x_info.rf
        pads = tuple((int(lo), int(hi)) for lo, hi in p["padding"])
        if isinstance(rf, RF):
            rf = rf.window(kernel[0], p["window_strides"][0], pads[0][0], p["rhs_dilation"][0])
        cin = _shape(lhs)[lhs_spec[1]]
        self._layer(
            name=scope,
            kind="dwconv" if groups > 1 and cin_per_group == 1 else "conv",
            in_shape=_nhwc(_shape(lhs), lhs_spec),
            out_shape=_nhwc(oshape, out_spec),
            kernel=kernel,
            stride=tuple(int(s) for s in p["window_strides"]),
            padding=pads,
            filters=oshape[out_spec[1]],
            groups=groups if cin else 1,
            macs=macs * repeat,
            out_bytes=int(np.prod(oshape)) * _itemsize(out) * repeat,
            rf=rf,
            depth=depth,
            repeat=repeat,
        )
        return Info(True, depth, depth_pool, rf)

    def dot(self, eqn, ins, scope, repeat) -> Info:
        lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
        out = eqn.outvars[0].aval
        (lc, _), _ = eqn.params["dimension_numbers"]
        contract = int(np.prod([lhs.shape[d] for d in lc]))
        macs = int(np.prod(_shape(out))) * contract
        both = ins[0].data and ins[1].data
        if not both:
            macs = round(macs * min(i.density for i in ins))  # the weight's structural zeros
        x_info = max((i for i in ins if i.data), key=lambda i: i.depth)
        weighted = not both
        depth = x_info.depth + weighted
        depth_pool = x_info.depth_pool + weighted
        data_aval = lhs if ins[0].data else rhs
        self._layer(
            name=scope,
            kind="matmul" if both else "fc",
            in_shape=_shape(data_aval)[1:],
            out_shape=_shape(out)[1:],
            filters=None if both else int(_shape(out)[-1]),
            macs=macs * repeat,
            out_bytes=int(np.prod(_shape(out))) * _itemsize(out) * repeat,
            rf=GLOBAL,
            depth=depth if weighted else 0,
            repeat=repeat,
        )
        return Info(True, depth, depth_pool, GLOBAL)

    def pool(self, eqn, x_info, scope, repeat) -> Info:
        p = eqn.params
        lhs, out = eqn.invars[0].aval, eqn.outvars[0].aval
        kind = {"reduce_window_max": "maxpool", "reduce_window_sum": "avgpool"}.get(
            eqn.primitive.name, "pool"
        )
        win, strides = p["window_dimensions"], p["window_strides"]
        pads = tuple((int(lo), int(hi)) for lo, hi in p["padding"])
        spatial = (1, 2) if len(win) == 4 else tuple(range(len(win)))
        rf = x_info.rf
        if isinstance(rf, RF) and len(win) == 4:
            rf = rf.window(win[1], strides[1], pads[1][0], p["window_dilation"][1])
        depth_pool = x_info.depth_pool + 1
        self._layer(
            name=scope,
            kind=kind,
            in_shape=_shape(lhs)[1:],
            out_shape=_shape(out)[1:],
            kernel=tuple(int(win[d]) for d in spatial),
            stride=tuple(int(strides[d]) for d in spatial),
            padding=tuple(pads[d] for d in spatial),
            out_bytes=int(np.prod(_shape(out))) * _itemsize(out) * repeat,
            rf=rf,
            depth=x_info.depth,
            repeat=repeat,
        )
        return Info(True, x_info.depth, depth_pool, rf)

    def global_pool(self, eqn, x_info, scope, repeat) -> Info:
        lhs, out = eqn.invars[0].aval, eqn.outvars[0].aval
        self._layer(
            name=scope,
            kind="gpool",
            in_shape=_shape(lhs)[1:],
            out_shape=_shape(out)[1:],
            kernel=tuple(int(d) for d in lhs.shape[1:3]),
            out_bytes=int(np.prod(_shape(out))) * _itemsize(out) * repeat,
            rf=GLOBAL,
            depth=x_info.depth,
            repeat=repeat,
        )
        return Info(True, x_info.depth, x_info.depth_pool + 1, GLOBAL)


def _scan_carry(out: Info, carry_in: Info, length: int) -> Info:
    """A scan's carry after `length` passes: the body's depth gain, `length` times."""
    if not out.data:
        return out
    base = carry_in if carry_in.data else Info(True)
    return dataclasses.replace(
        out,
        depth=base.depth + (out.depth - base.depth) * length,
        depth_pool=base.depth_pool + (out.depth_pool - base.depth_pool) * length,
    )


def _nonzero_fraction(value) -> float:
    """Fraction of non-zero entries of a constant captured by the jaxpr (1.0 if unknown)."""
    try:
        array = np.asarray(value)
    except Exception:  # e.g. a key array: no zero pattern to speak of
        return 1.0
    if array.size == 0 or not np.issubdtype(array.dtype, np.number):
        return 1.0
    return float(np.count_nonzero(array)) / array.size


def _nhwc(shape: tuple[int, ...], spec: Sequence[int]) -> tuple[int, ...]:
    """Shape without batch, spatial dims first and channels last (H, W, C)."""
    return (*(shape[d] for d in spec[2:]), shape[spec[1]])


def _module_path(scope: str) -> str:
    """`ResNet/stage1/conv.__call__` -> `stage1/conv` (drop the root class and method names)."""
    parts = [p.split(".")[0] for p in scope.split("/") if p]
    return "/".join(parts[1:])


def attach_params(layers: list[Layer], params) -> int:
    """Gives each row its module's parameters (first row per module); returns those left over.

    Biases are the module's `bias` leaves, weights all its other leaves (kernels; stacked
    along a leading axis inside `nn.scan`). Parameters of modules without a row (norms,
    embeddings, the LeNet subsampling coefficients) are counted as left over.
    """
    by_module: dict[str, list[Any]] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        by_module.setdefault("/".join(keys[:-1]), []).append((keys[-1], leaf))
    used = set()
    counts: dict[tuple[str, str], int] = {}
    for layer in layers:
        path = _module_path(layer.name)
        if layer.kind not in _WEIGHTED:
            # Functional layers (pooling, attention products) have no module of their own:
            # number them by kind within the enclosing module (`maxpool1`, `head/gpool1`).
            n = counts[(path, layer.kind)] = counts.get((path, layer.kind), 0) + 1
            path = "/".join(p for p in (path, f"{layer.kind}{n}") if p)
        layer.name = path or "<root>"
        if layer.kind not in _WEIGHTED or layer.name in used or layer.name not in by_module:
            continue
        used.add(layer.name)
        for key, leaf in by_module[layer.name]:
            if key == "bias":
                layer.biases += math.prod(leaf.shape)
            else:
                layer.weights += math.prod(leaf.shape)
    return sum(
        math.prod(leaf.shape)
        for m, leaves in by_module.items()
        if m not in used
        for _, leaf in leaves
    )


def trace(model, input_shape: Sequence[int], dtype=jnp.float32) -> Trace:
    """Traces `model.apply(variables, x, train=False)` and returns its layers.

    Args:
      model: a Flax linen module with `__call__(x, *, train)`.
      input_shape: (batch, height, width, channels).
      dtype: input dtype.

    Returns:
      A `Trace` with one `Layer` per conv / fc / matmul / pooling op, in execution order.
    """
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    # `init` runs every branch that owns parameters, training-only heads included (GoogLeNet's
    # auxiliary classifiers), so the layers come from a trace of inference itself: `apply`
    # with train=False on the abstract variables of eval_shape(init). Convolutions are traced
    # as `conv_general_dilated` equations, not as cnnx's CPU routes (oneDNN calls, shifted
    # depthwise sums).
    with backends.lax_only():
        variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
        closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    walker = _Walker(int(input_shape[0]))
    n_vars = len(jax.tree.leaves(variables))
    infos = [CONST] * n_vars + [Info(True, 0, 0, INPUT_RF)]
    outs = walker.run(closed.jaxpr, infos, "", 1, consts=closed.consts)
    data_outs = [o for o in outs if o.data] or [CONST]
    read = {v for eqn in closed.jaxpr.eqns for v in eqn.invars if not isinstance(v, jcore.Literal)}
    read |= {v for v in closed.jaxpr.outvars if not isinstance(v, jcore.Literal)}
    var_invars = dict(zip(closed.jaxpr.invars, jax.tree_util.tree_leaves_with_path(variables)))
    unread = sum(
        math.prod(leaf.shape)
        for v, (path, leaf) in var_invars.items()
        if v not in read and getattr(path[0], "key", None) == "params"
    )
    return Trace(
        layers=walker.layers,
        depth=max(o.depth for o in data_outs),
        depth_pool=max(o.depth_pool for o in data_outs),
        params=variables.get("params", {}),
        batch=int(input_shape[0]),
        input_shape=tuple(int(d) for d in input_shape[1:]),
        training_only_params=unread,
    )


def trace_registered(name: str, resolution: int | None = None, batch: int = 1, **overrides):
    """`trace` of a registered model at `resolution` (default: the spec's)."""
    from cnnx import models

    spec = models.get_spec(name)
    r = resolution or spec.resolution
    return trace(models.create(name, **overrides), (batch, r, r, spec.in_chans))
