"""zoo_report (markdown, README splice, plots) and the first-layer filter grid."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnnx import models
from cnnx.analysis import zoo
from cnnx.analysis.filters import filters_grid, first_conv_kernel
from tests.analysis.scripts import load_script


def test_zoo_report_subset(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# cnnx\n\n{zoo.START}\nold table\n{zoo.END}\n\nmore text\n")
    out = tmp_path / "docs" / "zoo.md"
    rc = load_script("zoo_report").main(
        ["--models", "lenet5,resnet18", "--out", str(out), "--readme", str(readme), "--quiet"]
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
    png = filters_grid(params)
    img = Image.open(io.BytesIO(png))
    # 6 filters 5×5, scaled ×5 to 25 px, in a 3×2 grid with 1 px borders.
    assert img.size == (3 * 26 + 1, 2 * 26 + 1) and img.mode == "RGB"


def test_first_conv_is_the_stem():
    x = jnp.zeros((1, 32, 32, 3))
    model = models.create("resnet18")
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False)["params"])
    path, kernel = first_conv_kernel(jax.tree.map(lambda s: np.zeros(s.shape), shapes))
    assert path == "stem/conv/kernel" and kernel.shape == (7, 7, 3, 64)


def test_show_filters_script(tmp_path, monkeypatch):
    script = load_script("show_filters")
    rng = np.random.default_rng(0)
    ckpt = {"stem": {"conv": {"kernel": rng.normal(size=(7, 7, 3, 8)).astype(np.float32)}}}
    monkeypatch.setattr(script, "load_checkpoint_params", lambda path: ckpt)
    out = tmp_path / "f.png"
    assert script.main(["--checkpoint", "unused", "--out", str(out)]) == 0
    assert Image.open(out).size == (3 * 29 + 1, 3 * 29 + 1)  # 8 filters 7×7 ×4, 3×3 grid
