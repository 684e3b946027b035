"""EfficientNet grid search: the constraint filter, sub-sampling, φ scaling, the sweep file."""

import pytest

from cnnx.models.scaling import flops_factor
from cnnx.sweeps.grid import (
    PAPER_POINT,
    PUBLISHED,
    constraint_grid,
    format_phi_table,
    grid_values,
    phi_rows,
    satisfies,
    subsample,
)
from cnnx.sweeps.spec import load_config, load_sweep

GRID_FILE = "configs/sweeps/efficientnet_grid.py"

# (alpha, beta, gamma, tol, inside?)
CONSTRAINT_CASES = [
    (1.2, 1.1, 1.15, 0.05, True),  # the paper's point: 1.92, 4% below 2
    (1.2, 1.1, 1.15, 0.03, False),
    (2.0, 1.0, 1.0, 0.0, True),  # all depth
    (1.0, 1.0, 1.0, 0.05, False),  # no scaling at all
    (1.0, 1.4, 1.0, 0.05, True),  # 1.96
    (0.9, 1.2, 1.2, 0.5, False),  # a coefficient below 1 shrinks the network
]


@pytest.mark.parametrize("a,b,g,tol,inside", CONSTRAINT_CASES, ids=lambda v: str(v))
def test_constraint_filter(a, b, g, tol, inside):
    assert satisfies(a, b, g, 2.0, tol) is inside


def test_default_grid_contains_paper_point_and_only_valid_points():
    grid = constraint_grid()  # step 0.05, tol 5%
    assert PAPER_POINT in grid
    assert all(abs(flops_factor(*p) / 2 - 1) <= 0.05 + 1e-9 for p in grid)
    assert len(grid) == len(set(grid)) > 50
    assert grid == sorted(grid)
    # Every grid point off the constraint is excluded, not just the listed ones.
    full = [
        (a, b, g)
        for a in grid_values(1.0, 2.0, 0.05)
        for b in grid_values(1.0, 1.5, 0.05)
        for g in grid_values(1.0, 1.5, 0.05)
    ]
    assert {p for p in full if satisfies(*p)} == set(grid)


def test_grid_values_are_exact_and_tolerance_parameter():
    assert grid_values(1.0, 1.2, 0.05) == [1.0, 1.05, 1.1, 1.15, 1.2]
    assert 1.15 in grid_values(1.0, 1.5, 0.05)  # no 1.1500000000000001
    assert PAPER_POINT not in constraint_grid(tol=0.03)
    assert len(constraint_grid(tol=0.1)) > len(constraint_grid(tol=0.05))
    assert PAPER_POINT not in constraint_grid(step=0.1)  # 1.15 is not on a 0.1 grid


def test_subsample_keeps_paper_point():
    grid = constraint_grid()
    picked = subsample(grid, 6)
    assert len(picked) == 6 and PAPER_POINT in picked and set(picked) <= set(grid)
    assert subsample(grid, 6) == picked  # deterministic
    assert subsample(grid[:3], 10) == grid[:3]


def test_phi_scaling_matches_compound_rule_and_builder():
    from cnnx.models.efficientnet import efficientnet

    rows = phi_rows(*PAPER_POINT, base_resolution=224)
    assert [r["phi"] for r in rows] == list(range(1, 8))
    r1, r7 = rows[0], rows[-1]
    assert (r1["depth"], r1["width"], r1["resolution"]) == pytest.approx((1.2, 1.1, 258))
    assert r7["depth"] == pytest.approx(1.2**7) and r7["width"] == pytest.approx(1.1**7)
    assert r7["flops_factor"] == pytest.approx(flops_factor(*PAPER_POINT) ** 7)
    for r in rows:  # the registered EfficientNet builder follows the same rule
        module, res = efficientnet(r["phi"])
        assert (module.depth_mult, module.width_mult, res) == pytest.approx(
            (r["depth"], r["width"], r["resolution"])
        )
        assert (r["pub_width"], r["pub_depth"], r["pub_resolution"]) == PUBLISHED[r["phi"]]
    text = format_phi_table(*PAPER_POINT)
    assert "B7" in text and "600" in text and "258" in text


def test_sweep_file_default_has_paper_trial():
    sweep = load_sweep(GRID_FILE)
    assert sweep.base.model.name == "efficientnet_b0"
    paper = [
        t for t in sweep.trials if (t.tags["alpha"], t.tags["beta"], t.tags["gamma"]) == PAPER_POINT
    ]
    assert len(paper) == 1
    assert paper[0].overrides == {
        "model.depth_mult": 1.2,
        "model.width_mult": 1.1,
        "data.image_size": 258,
    }


@pytest.mark.parametrize(
    "arg,model,n,res",
    [
        ("digits", "efficientnet_b0", 6, 37),
        ("resnet18,limit=4", "resnet18", 4, 258),
        ("mobilenet_v2,digits,limit=3", "mobilenet_v2", 3, 37),
        ("resnet20_cifar,digits,res=24,limit=5", "resnet20_cifar", 5, 28),
    ],
    ids=["digits", "resnet18", "mobilenet_v2_digits", "resnet20_cifar"],
)
def test_sweep_file_any_family(arg, model, n, res):
    sweep = load_sweep(f"{GRID_FILE}:{arg}")
    assert sweep.base.model.name == model and len(sweep.trials) == n
    paper = [
        t
        for t in sweep.trials
        if t.overrides["model.depth_mult"] == 1.2 and t.overrides["model.width_mult"] == 1.1
    ]
    assert paper and paper[0].overrides["data.image_size"] == res


def test_sweep_file_rejects_unknown_option():
    with pytest.raises(ValueError, match=r"unknown config arg 'stepz=0\.1'"):
        load_sweep(f"{GRID_FILE}:digits,stepz=0.1")


@pytest.mark.parametrize(
    "ref",
    [
        "configs/sweeps/fixres.py:digitz",
        "configs/sweeps/lr_search.py:trails=3",
        "configs/sweeps/efficientnet_grid.py:digits,resnet18",  # the model comes first
    ],
)
def test_sweep_files_refuse_unknown_arg_words(ref):
    load = load_config if "fixres" in ref else load_sweep
    with pytest.raises(ValueError, match="unknown config arg"):
        load(ref)
