"""zoo_report (markdown, README splice, plots) and the first-layer filter grid."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from cnnx import models
from cnnx.analysis import zoo
from cnnx.analysis.filters import filters_png, first_conv_kernel, grid
from tests.analysis.scripts import load_script


def test_zoo_report_subset(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# cnnx\n\n{zoo.START}\nold table\n{zoo.END}\n\nmore text\n")
    out = tmp_path / "docs" / "zoo.md"
    rc = load_script("zoo_report").main(
        ["--models=lenet5,resnet18", f"--output={out}", f"--readme={readme}", "--quiet"]
    )
    assert rc == 0
    table = out.read_text()
    assert "| `lenet5` | 1998 | 32 | 0.06 |" in table
    assert "| `resnet18` | 2015 | 224 | 11.69 | 1.814 | 18 |" in table
    assert "69.76 [1]" in table and "[1] torchvision IMAGENET1K_V1 weights" in table
    text = readme.read_text()
    assert "old table" not in text and "`resnet18`" in text and text.endswith("more text\n")
    for png in ("zoo_top1_vs_gmacs.png", "zoo_top1_vs_params.png"):
        assert (out.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_splice_needs_markers():
    assert (
        zoo.splice(f"a\n{zoo.START}\nx\n{zoo.END}\nb", "T\n") == f"a\n{zoo.START}\nT\n{zoo.END}\nb"
    )
    with pytest.raises(ValueError, match="markers"):
        zoo.splice("no markers", "T")


def test_filters_grid():
    rng = np.random.default_rng(0)
    params = {  # insertion order = call order; the 1-channel 5×5 kernel comes first
        "c1": {"kernel": rng.normal(size=(5, 5, 1, 6)), "bias": np.zeros(6)},
        "c3": {"kernel": rng.normal(size=(5, 5, 6, 16))},
    }
    path, kernel = first_conv_kernel(params)
    assert path == "c1/kernel"
    # 6 filters 5×5, scaled ×5 to 25 px, in a 3×2 grid with 1 px borders.
    from cnnx.analysis.filters import filter_images

    assert grid(filter_images(kernel), 24).shape == (2 * 26 + 1, 3 * 26 + 1, 3)
    img = Image.open(io.BytesIO(filters_png(params, title="lenet5, step 660", min_cell=48)))
    # Scaled ×10 to 50 px cells (3×2 grid: 154×103 px) under a title band, at least 360 wide.
    assert img.size[0] >= 360 and img.size[1] >= 2 * 51 + 1 + 40


def test_first_conv_is_the_stem():
    x = jnp.zeros((1, 32, 32, 3))
    model = models.create("resnet18")
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False)["params"])
    path, kernel = first_conv_kernel(jax.tree.map(lambda s: np.zeros(s.shape), shapes))
    assert path == "stem/conv/kernel" and kernel.shape == (7, 7, 3, 64)


def test_show_filters_script(tmp_path, monkeypatch, capsys):
    script = load_script("show_filters")
    rng = np.random.default_rng(0)
    ckpt = {"stem": {"conv": {"kernel": rng.normal(size=(7, 7, 3, 8)).astype(np.float32)}}}
    monkeypatch.setattr(script, "load_checkpoint_params", lambda path, step: (ckpt, 660, "r18"))
    out = tmp_path / "f.png"
    assert script.main(["--workdir=unused", f"--output={out}"]) == 0
    # 8 filters 7×7 ×7 = 49 px, 3×3 grid: 151 px, under the title band.
    width, height = Image.open(out).size
    assert width >= 360 and height > 3 * 50 + 1
    assert "r18, step 660" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a run or a model, not both
        script.main(["--workdir=unused", "--model=lenet5"])


def _dense_rows(n: int = 60) -> list[zoo.ZooRow]:
    """Models crowded like the zoo's 4–40 GMAC, 80–85 % cluster, in 6 families."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        crowded = i < n // 2
        gmacs = float(rng.uniform(4, 40) if crowded else 10 ** rng.uniform(-1.5, 1.8))
        top1 = float(rng.uniform(80, 85) if crowded else rng.uniform(55, 80))
        rows.append(
            zoo.ZooRow(
                f"model_{i}_x{i * 7 % 13}",
                2020,
                224,
                int(1e6 * (i + 1)),
                gmacs,
                10,
                1.0,
                (top1, "paper"),
                family=f"family{i % 6}",
            )
        )
    return rows


@pytest.mark.parametrize("key", ["gmacs", "params"])
def test_zoo_labels_do_not_overlap(key):
    import matplotlib.pyplot as plt

    fig = zoo.scatter_figure(_dense_rows(), key)
    fig.canvas.draw()  # the rendered figure: annotations take their final places
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    # Text.get_window_extent: the label's own box (an Annotation's adds its leader line).
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    assert len(boxes) == 60 and sorted(t.get_text() for t in ax.texts)[0] == "model_0_x0"
    frame = ax.get_window_extent(renderer)
    for i, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1
        for b in boxes[:i]:
            assert not a.overlaps(b), (ax.texts[i].get_text(), a, b)
    # Coloured by family, each family's members joined by a line, a legend of families.
    assert len(ax.lines) == 6 and len(ax.get_legend().get_texts()) == 6
    assert fig.get_size_inches().tolist() == [13, 8]
    plt.close(fig)


def test_place_labels_avoids_markers_and_each_other():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    points = [(1.0, 1.0)] * 5 + [(1.02, 1.01)] * 5  # ten labels on two nearly equal points
    ax.scatter(*zip(*points))
    ax.set_xlim(0, 2)
    ax.set_ylim(0, 2)
    texts = zoo.place_labels(ax, points, [f"label {i}" for i in range(10)])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[:i])
    marker = ax.transData.transform((1.0, 1.0))
    assert not any(b.contains(*marker) for b in boxes)
    plt.close(fig)
