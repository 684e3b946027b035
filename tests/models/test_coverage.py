"""cnnx.models.coverage: the input pixels that reach no logit, against the gradient's truth.

The input-size check built on it (`cnnx.train.experiment.check_input_size`, its messages and
suggestions) is tested in tests/train/test_input_checks.py.
"""

import jax
import numpy as np
import pytest

from cnnx import models
from tests.models.helpers import unused_positions

# (model, size, unused trailing rows): families whose trace takes seconds; the walk alone.
CROPS_SLOW = {
    "convnext_patchify_stem": ("convnext_tiny", 226, 2),
    "swin_patch": ("swin_t", 226, 2),
    "inception_v3_valid_stride2": ("inception_v3", 300, 1),
    "nasnet": ("nasnetamobile", 226, 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CROPS_SLOW))
def test_sizes_a_costly_family_would_crop_are_found(case):
    name, size, n = CROPS_SLOW[case]
    model = models.create(name, num_classes=10)
    rows, cols = unused_positions(model, size)[1:3]
    assert list(np.flatnonzero(rows)) == list(range(size - n, size)) == list(np.flatnonzero(cols))


def _gradient_check(name, size):
    """The abstract walk against the truth: d(sum of logits)/d(pixel) on a random input."""
    kw = {"hidden_dim": 24, "mlp_dim": 48, "num_heads": 2, "num_layers": 2} if "vit" in name else {}
    # A narrower ViT compiles faster; widths move no pixel.
    spec, model = models.get_spec(name), models.create(name, num_classes=10, **kw)
    c = spec.in_chans
    x = jax.random.normal(jax.random.PRNGKey(1), (1, size, size, c))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    grad = np.abs(np.asarray(jax.grad(lambda x: model.apply(variables, x, train=False).sum())(x)))
    rows, cols = unused_positions(model, size, c)[1:3]
    assert list(np.flatnonzero(rows)) == list(np.flatnonzero(grad.sum(axis=(0, 2, 3)) == 0))
    assert list(np.flatnonzero(cols)) == list(np.flatnonzero(grad.sum(axis=(0, 1, 3)) == 0))
    return rows


def test_unused_pixels_are_exactly_those_without_gradient():
    assert _gradient_check("lenet5", 33).sum() == 1


@pytest.mark.slow
def test_unused_pixels_of_a_patch_model_are_exactly_those_without_gradient():
    assert _gradient_check("vit_ti_16", 40).sum() == 8
