"""The confusion plot: a capped canvas at any number of classes, the matrix up to 30 classes,
the most-confused pairs and the worst classes beyond, labels that do not overlap."""

import itertools

import numpy as np
import pytest
from PIL import Image

from cnnx.evaluate import plots
from cnnx.evaluate.plots import plot_title


def _confusion(k, seed=0):
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 3, (k, k)) * (rng.random((k, k)) < 0.05)
    return cm + np.diag(rng.integers(5, 50, k))


def _tick_labels(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        labels = [t for t in ax.get_yticklabels() if t.get_text()]
        yield ax, [t.get_window_extent(renderer) for t in labels]


@pytest.mark.parametrize("k", [10, 102, 1000])
def test_canvas_is_capped(k, tmp_path):
    path = tmp_path / "cm.png"
    plots.save_confusion_png(_confusion(k), str(path), title="lenet5 · test · top-1 90.00%")
    width, height = Image.open(path).size
    cap = plots.MAX_SIZE_IN * plots.DPI
    assert width <= cap and height <= cap, (width, height)
    assert path.stat().st_size < 300_000  # 1000 classes: not a 50,000 px matrix
    if k == 10:
        assert width < 0.7 * cap  # a small problem gets a small figure


def test_matrix_up_to_30_classes_pairs_and_worst_classes_beyond():
    small = plots.confusion_figure(_confusion(30))
    assert len(small.axes[0].get_images()) == 1  # the heat map
    assert len(small.axes[0].get_xticklabels()) == 30
    cm = _confusion(102)
    cm[4, 9] = 500  # the most-confused pair
    cm[17, 17] = 0  # a class never right: the worst
    big = plots.confusion_figure(cm, title="t")
    pairs, worst = big.axes[:2]
    assert not pairs.get_images()
    assert pairs.get_yticklabels()[0].get_text().startswith("4 → 9")
    assert worst.get_yticklabels()[0].get_text().startswith("17 (n=")
    assert len(pairs.get_yticklabels()) == len(worst.get_yticklabels()) == plots.TOP_PAIRS


@pytest.mark.parametrize("k", [10, 30, 102, 1000])
def test_row_labels_do_not_overlap(k):
    names = [f"class with a long name {i}" for i in range(k)]
    fig = plots.confusion_figure(_confusion(k), class_names=names, title="t")
    for _, boxes in _tick_labels(fig):
        boxes = sorted(boxes, key=lambda b: b.y0)
        for lower, upper in itertools.pairwise(boxes):
            assert lower.y1 <= upper.y0 + 0.5, (k, lower, upper)


def test_title_names_split_views_and_top1():
    results = {
        "model": "lenet5",
        "step": 660,
        "split": "test",
        "image_size": 32,
        "views": 10,
        "members": ["a", "b"],
        "ema": False,
        "eval/top1": 97.493,
    }
    title = plot_title(results)
    assert title == "lenet5 step 660 · test at 32 px · 10 views · 2 models · top-1 97.49%"
