"""Per-layer summary: the classic AlexNet table, grouped convs, output formats."""

import csv
import io
import json

import flax.linen as nn
import jax.numpy as jnp
import pytest

from cnnx import models
from cnnx.analysis import summary
from cnnx.analysis.trace import trace


class TinyAlexNet(nn.Module):
    """torchvision's single-tower AlexNet (features + classifier), enough for the table."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        conv = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]
        for i, (c, k, s, p) in enumerate(conv):
            x = nn.relu(nn.Conv(c, (k, k), s, [(p, p)] * 2, name=f"conv{i + 1}")(x))
            if i in (0, 1, 4):
                x = nn.max_pool(x, (3, 3), (2, 2))
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # NCHW flatten, as torch
        x = nn.relu(nn.Dense(4096, name="fc6")(x))
        x = nn.relu(nn.Dense(4096, name="fc7")(x))
        return nn.Dense(1000, name="fc8")(x)


# The classic table at 227 px: (row index, name, output C×H×W, KB, weights, biases, MACs).
ALEXNET_ROWS = [
    (0, "conv1", (56, 56, 64), 784.0, 23_232, 64, 72_855_552),
    (1, "maxpool1", (27, 27, 64), 182.25, 0, 0, 0),
    (2, "conv2", (27, 27, 192), 546.75, 307_200, 192, 223_948_800),
    (8, "fc6", (4096,), 16.0, 37_748_736, 4096, 37_748_736),
    (10, None, (1000,), 3.90625, 4_096_000, 1000, 4_096_000),
]


def _check_alexnet(s: summary.Summary):
    assert len(s.layers) == 11
    for i, name, out, kb, weights, biases, macs in ALEXNET_ROWS:
        row = s.layers[i]
        if name:
            assert row.name == name
        assert row.out_shape == out
        assert row.out_bytes / 1024 == pytest.approx(kb)
        assert (row.weights, row.biases, row.macs) == (weights, biases, macs)
    conv1 = s.layers[0]
    assert (conv1.filters, conv1.kernel, conv1.stride, conv1.padding) == (
        64,
        (11, 11),
        (4, 4),
        ((2, 2), (2, 2)),
    )
    assert s.depth == 8


def test_alexnet_table_local_model():
    s = summary.from_trace("tiny_alexnet", trace(TinyAlexNet(), (1, 227, 227, 3)))
    _check_alexnet(s)
    assert s.total_params == 61_100_840 and s.other_params == 0


def test_alexnet_table_registered():
    if "alexnet" not in models.list_models():
        pytest.skip("alexnet is not registered yet")
    _check_alexnet(summary.summarize("alexnet", 227))


class GroupedNet(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.Conv(32, (3, 3), name="dense")(x)
        x = nn.Conv(32, (3, 3), feature_group_count=32, name="dw")(x)
        x = nn.Conv(64, (3, 3), strides=2, feature_group_count=4, name="grouped")(x)
        return nn.Dense(10, name="fc")(jnp.mean(x, axis=(1, 2)))


def test_grouped_and_depthwise_convs():
    s = summary.from_trace("g", trace(GroupedNet(), (2, 16, 16, 3)))
    kinds = [(r.name, r.kind) for r in s.layers]
    assert kinds == [
        ("dense", "conv"),
        ("dw", "dwconv"),
        ("grouped", "conv"),
        ("gpool1", "gpool"),
        ("fc", "fc"),
    ]
    dense, dw, grouped = s.layers[:3]
    assert dense.macs == 2 * 16 * 16 * 32 * 27
    assert dw.macs == 2 * 16 * 16 * 32 * 9 and dw.weights == 9 * 32
    assert grouped.groups == 4 and grouped.macs == 2 * 8 * 8 * 64 * 9 * 8
    assert grouped.weights == 3 * 3 * 8 * 64


@pytest.mark.parametrize("fmt", sorted(summary.FORMATS))
def test_formats(fmt):
    s = summary.summarize("lenet5")
    text = summary.FORMATS[fmt](s)
    if fmt == "json":
        doc = json.loads(text)
        assert doc["totals"]["parameters"] == 60_850
        assert [r["name"] for r in doc["layers"]][:2] == ["c1", "s2/avgpool1"]
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0][0] == "layer" and rows[-1][0] == "TOTAL" and len(rows) == 9
    else:
        assert "c1" in text and "TOTAL" in text and "1024 bytes" in text
        if fmt == "markdown":
            assert text.startswith("| layer |")


def test_summarize_script(capsys):
    from tests.analysis.scripts import load_script

    load_script("summarize").main(["--model", "lenet5", "--format", "markdown"])
    assert "| c1 | conv | 1×32×32 | 6 |" in capsys.readouterr().out


class _Block(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.relu(nn.Dense(8, name="d")(x)), None


class ScannedNet(nn.Module):
    """Three dense layers stacked with nn.scan (how transformers often repeat blocks)."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = jnp.mean(nn.Conv(8, (3, 3), name="stem")(x), axis=(1, 2))
        blocks = nn.scan(_Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
        x, _ = blocks(name="layers")(x, None)
        return nn.Dense(2, name="out")(x)


def test_scan_rows_repeat():
    s = summary.from_trace("scan", trace(ScannedNet(), (2, 8, 8, 3)))
    row = next(r for r in s.layers if r.name == "layers/d")
    assert (row.repeat, row.macs, row.weights, row.biases) == (3, 3 * 2 * 8 * 8, 192, 24)
    assert s.depth == 5  # stem, 3 scanned dense layers, out
    assert "layers/d (×3)" in summary.to_text(s)
