"""torchvision AlexNet names -> cnnx names (`features.N` convolutions, `classifier.N` FCs)."""

from cnnx.convert.core import TorchMapping, register_mapping

# torchvision's Sequential index of each convolution.
_CONVS = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}

register_mapping(
    "alexnet",
    TorchMapping(
        renames=(
            *((rf"^features\.{i}$", f"conv{n}") for i, n in _CONVS.items()),
            (r"^classifier\.1$", "fc6"),
            (r"^classifier\.4$", "fc7"),
            (r"^classifier\.6$", "head/fc"),
        )
    ),
)
