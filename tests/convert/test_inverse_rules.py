"""The generic inverse of the conversion rules (`cnnx.convert.to_torch`), on hand-made rules
and numpy state_dicts (no torch): rearrangements invert exactly, anything else is refused,
and what the forward conversion leaves out comes back from the template."""

import numpy as np
import pytest

from cnnx.convert import ConversionError, TorchMapping, convert_state_dict
from cnnx.convert.reference import reference_kwargs
from cnnx.convert.to_torch import variables_to_torch

RNG = np.random.default_rng(0)


def _split_rows(key, array):
    """A custom rule that splits one tensor into two variables, one of them transposed."""
    if key != "qk.weight":
        return None
    return [(("params", "q", "kernel"), array[:2]), (("params", "k", "kernel"), array[2:].T)]


SPLIT = TorchMapping(renames=((r"^fc$", "head"),), custom=_split_rows)
TEMPLATE = {
    "qk.weight": RNG.standard_normal((5, 3)).astype(np.float32),
    "fc.weight": RNG.standard_normal((4, 6)).astype(np.float32),
    "fc.bias": RNG.standard_normal(4).astype(np.float32),
    "bn.running_mean": RNG.standard_normal(6).astype(np.float32),
    "bn.running_var": RNG.random(6).astype(np.float32),
    "bn.num_batches_tracked": np.array(0, np.int64),
    "bn.weight": RNG.standard_normal(6).astype(np.float32),
    "bn.bias": RNG.standard_normal(6).astype(np.float32),
}
VARIABLES = {
    "params": {
        "q": {"kernel": np.zeros((2, 3), np.float32)},
        "k": {"kernel": np.zeros((3, 3), np.float32)},
        "head": {"kernel": np.zeros((6, 4), np.float32), "bias": np.zeros(4, np.float32)},
        "bn": {"scale": np.zeros(6, np.float32), "bias": np.zeros(6, np.float32)},
    },
    "batch_stats": {"bn": {"mean": np.zeros(6, np.float32), "var": np.zeros(6, np.float32)}},
}


def test_split_and_transposed_tensors_come_back_exactly():
    variables, _ = convert_state_dict(TEMPLATE, SPLIT, VARIABLES)
    back = variables_to_torch(variables, TEMPLATE, SPLIT, num_batches_tracked=7)
    assert list(back) == list(TEMPLATE)
    for key, value in TEMPLATE.items():
        if key != "bn.num_batches_tracked":
            np.testing.assert_array_equal(back[key], value, err_msg=key)
    assert back["bn.num_batches_tracked"].dtype == np.int64
    assert back["bn.num_batches_tracked"] == 7


@pytest.mark.parametrize(
    "rule,why",
    [
        (lambda a: [(("params", "q", "kernel"), 2 * a[:2]), (("params", "k", "kernel"), a[2:].T)],
         "scales"),
        (lambda a: [(("params", "q", "kernel"), a[:2]), (("params", "k", "kernel"), a[:3].T)],
         "repeats rows"),
        (lambda a: [(("params", "q", "kernel"), a[3:] * 0 + a[:2])], "drops and computes"),
    ],
    ids=["scales", "repeats", "drops"],
)  # fmt: skip
def test_rules_that_are_not_rearrangements_are_refused(rule, why):
    mapping = TorchMapping(
        renames=SPLIT.renames, custom=lambda k, a: rule(a) if k == "qk.weight" else None
    )
    with pytest.raises(ConversionError, match=r"not a rearrangement \(1\):\n    qk.weight"):
        variables_to_torch(VARIABLES, TEMPLATE, mapping)


def test_misfits_are_named():
    extra = {**TEMPLATE, "extra.weight": np.zeros((2, 2), np.float32)}
    fewer = {k: v for k, v in TEMPLATE.items() if not k.startswith("fc.")}
    wider = {**TEMPLATE, "fc.bias": np.zeros(5, np.float32)}
    with pytest.raises(ConversionError, match=r"no cnnx variable \(1\):\n    extra.weight"):
        variables_to_torch(VARIABLES, extra, SPLIT)
    with pytest.raises(ConversionError, match=r"no reference tensor \(2\)"):
        variables_to_torch(VARIABLES, fewer, SPLIT)
    with pytest.raises(ConversionError, match=r"shape mismatches \(1\):\n    fc.bias \(5,\)"):
        variables_to_torch(VARIABLES, wider, SPLIT)


def test_skipped_constants_come_from_the_template_and_optional_heads_may_be_dropped(caplog):
    mapping = TorchMapping(
        renames=SPLIT.renames, skip=(r"index$",), custom=_split_rows, optional=(r"^head(/|$)",)
    )
    template = {k: v for k, v in TEMPLATE.items() if not k.startswith("fc.")}
    template["attn.index"] = np.arange(6).reshape(2, 3)
    back = variables_to_torch(VARIABLES, template, mapping)
    np.testing.assert_array_equal(back["attn.index"], template["attn.index"])
    assert "no head" in caplog.text


def test_reference_options():
    assert reference_kwargs("resnet18", num_classes=10, dtype="bfloat16", width_mult=1.0) == {
        "num_classes": 10
    }
    assert reference_kwargs("vit_ti_16", num_classes=5, image_size=384) == {
        "num_classes": 5,
        "img_size": 384,
    }
    assert reference_kwargs("vit_b_16", num_classes=5, image_size=384)["image_size"] == 384
    assert reference_kwargs("vit_b_16", image_size=224) == {}
    with pytest.raises(ConversionError, match=r"width_mult=0.5 has no counterpart"):
        reference_kwargs("resnet18", width_mult=0.5)
    with pytest.raises(ConversionError, match="lenet5 has no torchvision / timm reference"):
        reference_kwargs("lenet5")
