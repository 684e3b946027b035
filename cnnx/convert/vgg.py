"""torchvision VGG names -> cnnx names (cnnx keeps torchvision's Sequential indices)."""

from cnnx.convert.core import TorchMapping, register_mapping

register_mapping(
    "vgg",
    TorchMapping(
        renames=(
            (r"^features\.(\d+)$", r"features_\1"),
            (r"^classifier\.6$", "head/fc"),
            (r"^classifier\.(\d+)$", r"classifier_\1"),
        )
    ),
)
