"""The confusion plot of an evaluation, readable at any number of classes.

Up to `MAX_MATRIX_CLASSES` classes: the matrix as a heat map with counts. Beyond that a
matrix is a blur of K² cells (ImageNet: a million), so the figure shows the most-confused
(true → predicted) pairs and the classes with the lowest top-1 instead. The canvas is capped
either way (at most `MAX_SIZE_IN` × `DPI` px on a side), so drawing 1000 classes costs what
drawing 10 does.
"""

import io

import numpy as np
from etils import epath

MAX_MATRIX_CLASSES = 30
MAX_SIZE_IN = 12.0  # the canvas is at most 12 × 12 in: 1,320 px at DPI
DPI = 110
TOP_PAIRS = 20  # rows of each panel of the summary figure
NAME_CHARS = 24  # class names cut to this many characters


def _names(k: int, class_names) -> list[str]:
    names = [str(n) for n in class_names] if class_names is not None else None
    if names is None or len(names) != k:
        names = [str(i) for i in range(k)]
    return [n if len(n) <= NAME_CHARS else n[: NAME_CHARS - 1] + "…" for n in names]


def _matrix_figure(cm: np.ndarray, names: list[str]):
    import matplotlib.pyplot as plt

    k = cm.shape[0]
    side = min(MAX_SIZE_IN - 1.5, 3.0 + 0.25 * k)  # inches for the matrix itself
    fig, ax = plt.subplots(figsize=(side + 1.5, side + 0.8), layout="constrained")
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8, label="examples")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fontsize = 8 if k <= 15 else 6
    ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0, fontsize=fontsize)
    ax.set_yticks(range(k), names, fontsize=fontsize)
    high = cm.max() / 2 if cm.size else 0
    for i, j in zip(*np.nonzero(cm)):
        color = "white" if cm[i, j] > high else "black"
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize, color=color)
    return fig


def _summary_figure(cm: np.ndarray, names: list[str]):
    import matplotlib.pyplot as plt

    k = cm.shape[0]
    support = cm.sum(axis=1)
    per_class = np.where(support > 0, 100.0 * np.diag(cm) / np.maximum(support, 1), np.nan)
    fig, (left, right) = plt.subplots(1, 2, figsize=(MAX_SIZE_IN, 6.5), layout="constrained")

    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    n = min(TOP_PAIRS, int(np.count_nonzero(off)))
    flat = np.argpartition(off.ravel(), -n)[-n:] if n else np.array([], np.int64)
    flat = flat[np.argsort(-off.ravel()[flat], kind="stable")]
    true, pred = np.unravel_index(flat, off.shape)
    counts = off[true, pred]
    bars = left.barh(range(n), counts, color="C3")
    share = [f"{c} ({100.0 * c / support[t]:.0f}%)" for t, c in zip(true, counts)]
    left.bar_label(bars, share, padding=2, fontsize=7)
    left.set_yticks(range(n), [f"{names[t]} → {names[p]}" for t, p in zip(true, pred)], fontsize=8)
    left.invert_yaxis()
    left.margins(x=0.2)  # room for the bar labels
    left.set_xlabel("examples (% of the true class)")
    left.set_title(f"most-confused pairs, true → predicted (top {n})", fontsize=10)

    known = np.flatnonzero(support > 0)
    worst = known[np.argsort(per_class[known], kind="stable")[:TOP_PAIRS]]
    bars = right.barh(range(len(worst)), per_class[worst], color="C0")
    right.bar_label(bars, [f"{per_class[c]:.0f}%" for c in worst], padding=2, fontsize=7)
    right.set_yticks(range(len(worst)), [f"{names[c]} (n={support[c]})" for c in worst], fontsize=8)
    right.invert_yaxis()
    right.set_xlim(0, 100)
    median = float(np.nanmedian(per_class)) if known.size else float("nan")
    right.axvline(median, color="gray", linestyle="--", label=f"median class {median:.1f}%")
    right.legend(fontsize=8, loc="lower right")
    right.set_xlabel("top-1 of the class (%)")
    missing = k - known.size
    right.set_title(
        f"lowest per-class top-1 ({len(worst)} of {k} classes"
        + (f"; {missing} without examples)" if missing else ")"),
        fontsize=10,
    )
    return fig


def confusion_figure(confusion, *, class_names=None, title: str = ""):
    """A matplotlib figure of a confusion matrix (rows true, columns predicted).

    Args:
      confusion: (K, K) counts.
      class_names: K names (default: the class indices).
      title: the figure's title (e.g. model, split, views, top-1).

    Returns:
      A `matplotlib.figure.Figure` of at most `MAX_SIZE_IN` inches on a side: the matrix for
      K <= `MAX_MATRIX_CLASSES`, else the most-confused pairs and the worst classes.
    """
    import matplotlib

    matplotlib.use("Agg")
    cm = np.asarray(confusion, dtype=np.int64)
    names = _names(cm.shape[0], class_names)
    if cm.shape[0] <= MAX_MATRIX_CLASSES:
        fig = _matrix_figure(cm, names)
    else:
        fig = _summary_figure(cm, names)
    fig.suptitle(title or "confusion matrix", fontsize=11)
    return fig


def save_confusion_png(confusion, path: str, class_names=None, title: str = "") -> None:
    """Writes `confusion_figure(...)` as a PNG to `path` (local or gs://, via etils.epath)."""
    import matplotlib.pyplot as plt

    fig = confusion_figure(confusion, class_names=class_names, title=title)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    epath.Path(path).write_bytes(buffer.getvalue())


def plot_title(results: dict) -> str:
    """'lenet5 step 660 · test · 10 views · 2 models · top-1 97.49%' of `evaluate_checkpoint`'s
    results: what the confusion plot shows."""
    parts = [
        f"{results['model']} step {results['step']}{' (EMA)' if results.get('ema') else ''}",
        f"{results['split']} at {results['image_size']} px",
        f"{results['views']} view{'s' if results['views'] != 1 else ''}",
    ]
    if len(results.get("members", ())) > 1:
        parts.append(f"{len(results['members'])} models")
    parts.append(f"top-1 {results['eval/top1']:.2f}%")
    return " · ".join(parts)
