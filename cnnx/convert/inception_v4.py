"""timm Inception-v4 / Inception-ResNet-v2 names -> cnnx names.

cnnx keeps timm's module names except where timm numbers a Sequential of whole modules:
Inception-v4's `features.N` and Inception-ResNet-v2's `repeat*.N` get descriptive names.
"""

from cnnx.convert.core import TorchMapping, register_mapping

# timm `features.N` of Inception-v4 -> cnnx module name.
V4_FEATURES = {
    0: "stem_conv1",
    1: "stem_conv2",
    2: "stem_conv3",
    3: "mixed_3a",
    4: "mixed_4a",
    5: "mixed_5a",
    **{6 + j: f"inception_a_{j}" for j in range(4)},
    10: "reduction_a",
    **{11 + j: f"inception_b_{j}" for j in range(7)},
    18: "reduction_b",
    **{19 + j: f"inception_c_{j}" for j in range(3)},
}

register_mapping(
    "inception_v4",
    TorchMapping(
        renames=(
            *((rf"^features\.{i}(?=\.|$)", name) for i, name in V4_FEATURES.items()),
            (r"^repeat\.(\d+)", r"block35_\1"),
            (r"^repeat_1\.(\d+)", r"block17_\1"),
            (r"^repeat_2\.(\d+)", r"block8_\1"),
            (r"^block8(?=\.|$)", "block8_final"),
            (r"\.(\d+)(?=\.|$)", r"_\1"),  # Sequential index inside a block: branch1.0 -> branch1_0
            (r"^(last_linear|classif)$", "head/fc"),
        )
    ),
)
