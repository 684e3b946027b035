"""EfficientNet's two-step compound scaling search (Tan & Le 2019, §3.3).

Step 1: fix φ = 1 and grid-search depth α, width β and resolution γ under the constraint
α·β²·γ² ≈ 2 (FLOPs scale linearly with depth and quadratically with width and resolution, so
each unit of φ about doubles them); the paper found α = 1.2, β = 1.1, γ = 1.15 for B0.
Step 2: fix (α, β, γ) and scale the baseline with φ = 1…7: depth α^φ, width β^φ,
resolution γ^φ (B1–B7). The published B1–B7 coefficients (`PUBLISHED`) were rounded by hand
from this rule, which the step-2 table shows side by side.
"""

import math
from collections.abc import Callable, Iterable, Sequence

from cnnx.models.scaling import compound, flops_factor, round_resolution

PAPER_POINT = (1.2, 1.1, 1.15)  # (alpha: depth, beta: width, gamma: resolution)
# φ: (width, depth, resolution), the official `efficientnet_params` (B0 at 224 px).
PUBLISHED = {
    1: (1.0, 1.1, 240),
    2: (1.1, 1.2, 260),
    3: (1.2, 1.4, 300),
    4: (1.4, 1.8, 380),
    5: (1.6, 2.2, 456),
    6: (1.8, 2.6, 528),
    7: (2.0, 3.1, 600),
}


def grid_values(lo: float, hi: float, step: float) -> list[float]:
    """lo, lo + step, …, hi (inclusive), as exact decimal-rounded values (no float drift)."""
    if step <= 0 or hi < lo:
        raise ValueError(f"bad grid range {lo}..{hi} step {step}")
    n = math.floor((hi - lo) / step + 1e-9)
    return [round(lo + i * step, 6) for i in range(n + 1)]


def satisfies(alpha: float, beta: float, gamma: float, target: float = 2.0, tol: float = 0.05):
    """α·β²·γ² within a relative `tol` of `target`, and no coefficient below 1."""
    if min(alpha, beta, gamma) < 1.0:
        return False
    return abs(flops_factor(alpha, beta, gamma) / target - 1.0) <= tol + 1e-12


def constraint_grid(
    step: float = 0.05,
    tol: float = 0.05,
    target: float = 2.0,
    alpha_range: tuple[float, float] = (1.0, 2.0),
    beta_range: tuple[float, float] = (1.0, 1.5),
    gamma_range: tuple[float, float] = (1.0, 1.5),
) -> list[tuple[float, float, float]]:
    """Every (α, β, γ) on the grid with α·β²·γ² within `tol` (relative) of `target`.

    Args:
      step: grid spacing of all three coefficients (the paper's search used 0.05 steps).
      tol: relative tolerance on the FLOPs factor; the paper's point (1.2, 1.1, 1.15) has
        α·β²·γ² = 1.92, 4% below 2, so `tol` must be at least 0.04 to contain it.
      target: the FLOPs growth per unit of φ (2: doubling).
      alpha_range, beta_range, gamma_range: inclusive search ranges (all >= 1).

    Returns:
      Points sorted by (α, β, γ).
    """
    return [
        (a, b, g)
        for a in grid_values(*alpha_range, step)
        for b in grid_values(*beta_range, step)
        for g in grid_values(*gamma_range, step)
        if satisfies(a, b, g, target, tol)
    ]


def subsample(
    points: Sequence[tuple], n: int, keep: tuple | None = PAPER_POINT
) -> list[tuple[float, float, float]]:
    """`n` points spread evenly over the (sorted) grid, including `keep` when it is on it.

    For small budgets (a digits run): the evenly spaced picks span depth-heavy to
    resolution-heavy points; the point to keep replaces its nearest pick.
    """
    points = list(points)
    if n >= len(points):
        return points
    if n <= 0:
        return []
    idx = sorted({round(i * (len(points) - 1) / max(1, n - 1)) for i in range(n)})
    picked = [points[i] for i in idx]
    if keep is not None and keep in points and keep not in picked:
        k = points.index(keep)
        nearest = min(range(len(idx)), key=lambda j: abs(idx[j] - k))
        picked[nearest] = keep
    return sorted(picked)


# (depth_mult, width_mult, resolution) -> the nearest resolution that model accepts (or None).
Snap = Callable[[float, float, int], int | None]


def phi_rows(
    alpha: float,
    beta: float,
    gamma: float,
    base_resolution: int = 224,
    phis: Iterable[int] = (),
    snap: Snap | None = None,
) -> list[dict]:
    """Step 2: the coefficients of φ = 1…7 (or `phis`) from (α, β, γ), beside the published ones.

    Args:
      snap: gives the resolution the φ-scaled model accepts nearest to the rule's
        (`cnnx.sweeps.sizes.accepted_size`); None: the rule's resolution is not checked.

    Returns:
      One dict per φ: phi, depth, width, resolution (from the rule), with `snap` also
      used_resolution (None: no accepted size near it) and, where φ is 1…7, pub_width,
      pub_depth, pub_resolution (EfficientNet B1–B7).
    """
    rows = []
    for phi in phis or range(1, 8):
        depth, width, res = compound(phi, alpha, beta, gamma)
        row = {
            "phi": phi,
            "depth": depth,
            "width": width,
            "resolution": round_resolution(base_resolution, res),
            "flops_factor": flops_factor(alpha, beta, gamma) ** phi,
        }
        if snap is not None:
            row["used_resolution"] = snap(depth, width, row["resolution"])
        if phi in PUBLISHED:
            pw, pd, pr = PUBLISHED[phi]
            row.update(pub_width=pw, pub_depth=pd, pub_resolution=pr)
        rows.append(row)
    return rows


def format_phi_table(
    alpha, beta, gamma, base_resolution: int = 224, snap: Snap | None = None
) -> str:
    """The step-2 table as text: rule (depth, width, resolution) | published B1–B7; with
    `snap`, the resolution shows the size the scaled model accepts ('35>36': the rule's 35 px
    snapped to 36; '35>?': none accepted nearby)."""
    lines = [
        f"Step 2: compound scaling with alpha={alpha:g} (depth), beta={beta:g} (width), "
        f"gamma={gamma:g} (resolution), base resolution {base_resolution}; "
        f"alpha*beta^2*gamma^2 = {flops_factor(alpha, beta, gamma):.3f}",
        f"{'phi':>3}  {'depth':>6} {'width':>6} {'res':>5} {'FLOPs x':>8}   |  published "
        f"{'model':>5} {'width':>6} {'depth':>6} {'res':>5}",
    ]
    scale = base_resolution / 224
    rows = phi_rows(alpha, beta, gamma, base_resolution, snap=snap)
    for r in rows:
        pub = ""
        if "pub_width" in r:
            pub_res = round(r["pub_resolution"] * scale)
            pub = (
                f"{'B' + str(r['phi']):>5} {r['pub_width']:>6.2f} {r['pub_depth']:>6.2f} "
                f"{pub_res:>5}"
            )
        res = str(r["resolution"])
        if "used_resolution" in r and r["used_resolution"] != r["resolution"]:
            res += f">{r['used_resolution'] or '?'}"
        lines.append(
            f"{r['phi']:>3}  {r['depth']:>6.3f} {r['width']:>6.3f} {res:>5} "
            f"{r['flops_factor']:>8.2f}   |  {' ' * 9} {pub}"
        )
    if base_resolution != 224:
        lines.append(f"(published resolutions scaled by {base_resolution}/224)")
    if any("used_resolution" in r and r["used_resolution"] != r["resolution"] for r in rows):
        lines.append("(a>b: the rule's a px snapped to b, the nearest size the model accepts)")
    return "\n".join(lines)
