"""torchvision GoogLeNet names -> cnnx names (cnnx mirrors torchvision's module names)."""

from cnnx.convert.core import TorchMapping, register_mapping

register_mapping(
    "googlenet",
    TorchMapping(
        renames=(
            (r"\.(\d+)(?=\.|$)", r"_\1"),  # Sequential index: branch2.0 -> branch2_0
            (r"^fc$", "head/fc"),
        )
    ),
)
