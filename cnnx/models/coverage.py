"""Which input pixels can reach a model's output, from its jaxpr alone (no compilation).

A model with a patch, window or stride constraint can silently ignore part of its input: a
ViT with 16-pixel patches at 40 px reads only the first 32 rows and columns, a stride-2 VALID
layer can drop the last row. This walks the model's jaxpr backwards from the output and keeps,
for every array, one boolean mask per axis: the positions that can influence the output (the
needed set is over-approximated by the product of its projections). Windows (convolutions,
pooling), slices, pads, reshapes, transposes, broadcasts, reductions and matrix products move
the masks exactly; any other operation marks all of its inputs as needed. So the result never
calls a used pixel unused: it can only miss a crop hidden behind an operation it does not
model, never refuse an input that is fully used.

The cost is one trace of the model (as `jax.eval_shape`) and a numpy walk over its equations:
well under a second for the registry's small models, a few seconds for the largest.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.extend import core as jcore

from cnnx import backends

Masks = tuple[np.ndarray, ...]  # one bool vector per axis; None where nothing is needed

_ELEMENTWISE = frozenset(
    str.split(
        """abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type
    copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt igamma
    imag integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter
    not or pow real reduce_precision rem round rsqrt select_n sign sin sinh sqrt square sub
    tan tanh xor stop_gradient"""
    )
)
_REDUCTIONS = frozenset(
    str.split("""reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or argmax argmin""")
)
_WINDOWS = frozenset({"reduce_window_sum", "reduce_window_max", "reduce_window_min"})
_PRODUCT_LIMIT = 1 << 24  # larger reshape groups are treated as fully needed


def _full(aval) -> Masks:
    return tuple(np.ones(d, bool) for d in aval.shape)


def _union(a: Masks | None, b: Masks | None) -> Masks | None:
    if a is None:
        return b
    if b is None:
        return a
    return tuple(x | y for x, y in zip(a, b))


def _window_axis(out: np.ndarray, n: int, k: int, s: int, lo: int, d: int = 1, b: int = 1):
    """Input positions (of `n`) that a needed output of a window (size k, stride s, leading
    padding lo, window dilation d, input dilation b) reads."""
    hits = set()
    for o in np.flatnonzero(out):
        for j in range(k):
            p = int(o) * s + j * d - lo  # position in the dilated, unpadded input
            if p >= 0 and p % b == 0 and p // b < n:
                hits.add(p // b)
    mask = np.zeros(n, bool)
    mask[list(hits)] = True
    return mask


def _reshape_groups(a: Sequence[int], b: Sequence[int]):
    """Pairs of axis groups of two shapes whose sizes multiply to the same number."""
    groups, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        ia, jb, pa, pb = [i], [j], a[i], b[j]
        while pa != pb:
            if pa < pb:
                i += 1
                pa *= a[i]
                ia.append(i)
            else:
                j += 1
                pb *= b[j]
                jb.append(j)
        groups.append((ia, jb))
        i, j = i + 1, j + 1
    groups += [([k], []) for k in range(i, len(a))] + [([], [k]) for k in range(j, len(b))]
    return groups


def _reshape(out: Masks, in_shape, out_shape) -> Masks:
    masks: list[np.ndarray | None] = [None] * len(in_shape)
    needed = all(m.any() for m in out)
    for ia, jb in _reshape_groups(in_shape, out_shape):
        shape_in = [in_shape[i] for i in ia]
        if not jb or int(np.prod(shape_in)) > _PRODUCT_LIMIT:
            for i in ia:
                masks[i] = np.full(in_shape[i], needed)
            continue
        prod = out[jb[0]]
        for j in jb[1:]:
            prod = np.logical_and.outer(prod, out[j])
        prod = prod.reshape(shape_in)
        for k, i in enumerate(ia):
            others = tuple(x for x in range(len(ia)) if x != k)
            masks[i] = prod.any(axis=others) if others else prod
    return tuple(masks)


def _conv(eqn, out: Masks) -> list[Masks]:
    p = eqn.params
    lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
    dn = p["dimension_numbers"]
    masks = [None] * len(lhs.shape)
    masks[dn.lhs_spec[0]] = (
        out[dn.out_spec[0]]
        if p["batch_group_count"] == 1
        else np.full(lhs.shape[dn.lhs_spec[0]], True)
    )
    masks[dn.lhs_spec[1]] = np.full(lhs.shape[dn.lhs_spec[1]], True)
    spatial = zip(dn.lhs_spec[2:], dn.rhs_spec[2:], dn.out_spec[2:])
    for n, (ax_in, ax_k, ax_out) in enumerate(spatial):
        masks[ax_in] = _window_axis(
            out[ax_out],
            lhs.shape[ax_in],
            rhs.shape[ax_k],
            p["window_strides"][n],
            p["padding"][n][0],
            p["rhs_dilation"][n],
            p["lhs_dilation"][n],
        )
    return [tuple(masks), _full(rhs)]


def _reduce_window(eqn, out: Masks) -> list[Masks]:
    p = eqn.params
    x = eqn.invars[0].aval
    n_operands = 1 if eqn.primitive.name in _WINDOWS else len(eqn.invars) // 2
    masks = tuple(
        _window_axis(
            out[a],
            x.shape[a],
            p["window_dimensions"][a],
            p["window_strides"][a],
            p["padding"][a][0],
            p["window_dilation"][a],
            p["base_dilation"][a],
        )
        for a in range(len(x.shape))
    )
    return [masks] * n_operands + [_full(v.aval) for v in eqn.invars[n_operands:]]


def _dot(eqn, out: Masks) -> list[Masks]:
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
    nb = len(lb)
    lfree = [a for a in range(len(lhs.shape)) if a not in lc and a not in lb]
    rfree = [a for a in range(len(rhs.shape)) if a not in rc and a not in rb]
    needed = all(m.any() for m in out)

    def side(aval, contract, batch, free, offset):
        masks = [None] * len(aval.shape)
        for a in contract:
            masks[a] = np.full(aval.shape[a], needed)
        for k, a in enumerate(batch):
            masks[a] = out[k]
        for k, a in enumerate(free):
            masks[a] = out[offset + k]
        return tuple(masks)

    return [side(lhs, lc, lb, lfree, nb), side(rhs, rc, rb, rfree, nb + len(lfree))]


# Primitives that call a jaxpr with the equation's own inputs and outputs.
_CALLS = frozenset(
    str.split(
        """pjit jit closed_call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr
    remat checkpoint remat2 named_call"""
    )
)


def _sub_jaxpr(eqn):
    if eqn.primitive.name not in _CALLS:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(key)
        inner = getattr(inner, "jaxpr", inner)
        if (
            isinstance(inner, jcore.Jaxpr)
            and len(inner.invars) == len(eqn.invars)
            and len(inner.outvars) == len(eqn.outvars)
        ):
            return inner
    return None


def _eqn_inputs(eqn, outs: list[Masks | None]) -> list[Masks | None]:
    """The masks of an equation's inputs, from those of its outputs."""
    name = eqn.primitive.name
    avals = [v.aval for v in eqn.invars]
    inner = _sub_jaxpr(eqn)
    if inner is not None:
        return needed_inputs(inner, outs)
    if len(outs) != 1 or outs[0] is None:
        return [_full(a) for a in avals]  # several outputs (scan, while...): everything
    out, out_aval = outs[0], eqn.outvars[0].aval
    p = eqn.params
    if name in _ELEMENTWISE:
        return [out if a.shape == out_aval.shape else _full(a) for a in avals]
    if name == "broadcast_in_dim":
        x, dims = avals[0], p["broadcast_dimensions"]
        masks = tuple(
            out[d] if x.shape[i] == out_aval.shape[d] else np.full(x.shape[i], out[d].any())
            for i, d in enumerate(dims)
        )
        return [masks] + [_full(a) for a in avals[1:]]
    if name == "reshape":
        return [_reshape(out, avals[0].shape, out_aval.shape)] + [_full(a) for a in avals[1:]]
    if name == "transpose":
        masks = [None] * len(out)
        for k, a in enumerate(p["permutation"]):
            masks[a] = out[k]
        return [tuple(masks)]
    if name == "squeeze":
        kept = iter(out)
        dims = {d % len(avals[0].shape) for d in p["dimensions"]}
        needed = all(m.any() for m in out)
        x = avals[0]
        return [tuple(np.full(1, needed) if a in dims else next(kept) for a in range(x.ndim))]
    if name == "rev":
        return [tuple(m[::-1] if a in p["dimensions"] else m for a, m in enumerate(out))]
    if name in _REDUCTIONS:
        axes, kept = set(p["axes"]), iter(out)
        needed = all(m.any() for m in out)
        x = avals[0]
        masks = (np.full(x.shape[a], needed) if a in axes else next(kept) for a in range(x.ndim))
        return [tuple(masks)]
    if name == "conv_general_dilated":
        return _conv(eqn, out)
    if name in _WINDOWS or name == "reduce_window":
        return _reduce_window(eqn, out)
    if name == "dot_general":
        return _dot(eqn, out)
    if name == "pad":
        x = avals[0]
        masks = []
        for a, (lo, _, interior) in enumerate(p["padding_config"]):
            pos = lo + np.arange(x.shape[a]) * (interior + 1)
            ok = (pos >= 0) & (pos < out_aval.shape[a])
            m = np.zeros(x.shape[a], bool)
            m[ok] = out[a][pos[ok]]
            masks.append(m)
        return [tuple(masks), _full(avals[1])]
    if name == "slice":
        x = avals[0]
        strides = p["strides"] or (1,) * len(x.shape)
        masks = []
        for a, (start, step) in enumerate(zip(p["start_indices"], strides)):
            m = np.zeros(x.shape[a], bool)
            m[start + np.arange(out_aval.shape[a]) * step] = out[a]
            masks.append(m)
        return [tuple(masks)]
    if name == "concatenate":
        d, start, res = p["dimension"], 0, []
        for a in avals:
            n = a.shape[d]
            res.append(tuple(m[start : start + n] if k == d else m for k, m in enumerate(out)))
            start += n
        return res
    return [_full(a) for a in avals]  # anything else: every input fully needed


def needed_inputs(jaxpr, out_masks: Sequence[Masks | None]) -> list[Masks | None]:
    """Per input of `jaxpr`, the positions (one mask per axis) that can reach the outputs
    given by `out_masks`; None for an input that reaches none."""
    env: dict = {}

    def add(v, m):
        if isinstance(v, jcore.Var) and m is not None:
            env[v] = _union(env.get(v), m)

    for v, m in zip(jaxpr.outvars, out_masks):
        add(v, m)
    for eqn in reversed(jaxpr.eqns):
        outs = [env.get(v) if isinstance(v, jcore.Var) else None for v in eqn.outvars]
        if all(o is None for o in outs):
            continue
        for v, m in zip(eqn.invars, _eqn_inputs(eqn, outs)):
            add(v, m)
    return [env.get(v) for v in jaxpr.invars]


def unused_input_positions(fn, x: jax.ShapeDtypeStruct) -> Masks:
    """Per axis of `x`, the positions that no output of `fn(x)` depends on (True = unused).

    Args:
      fn: a traceable function of one array (e.g. a model's forward pass in eval mode).
      x: the input's shape and dtype.

    Returns:
      One bool vector per axis of `x`: True where a whole slice of the input (a row, a
      column...) has no influence on any output.

    Raises:
      Whatever tracing `fn` raises (a shape the model cannot take).
    """
    # Convolutions as `conv_general_dilated` equations, which the walk reads exactly; on the CPU
    # they would otherwise trace as oneDNN calls (or shifted depthwise sums), and an opaque
    # call counts every input as used: a crop would pass unseen.
    with backends.lax_only():
        closed = jax.make_jaxpr(fn)(x)
    outs = [_full(v.aval) for v in closed.jaxpr.outvars]
    (need,) = needed_inputs(closed.jaxpr, outs)
    if need is None:
        return tuple(np.ones(d, bool) for d in x.shape)
    return tuple(~m for m in need)
