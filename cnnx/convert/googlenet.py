"""torchvision GoogLeNet names -> cnnx names (cnnx mirrors torchvision's module names)."""

from cnnx.convert.core import TorchMapping, register_mapping

register_mapping(
    "googlenet",
    TorchMapping(
        renames=(
            (r"\.(\d+)(?=\.|$)", r"_\1"),  # Sequential index: branch2.0 -> branch2_0
            (r"^fc$", "head/fc"),
        ),
        # torchvision's pretrained builder deletes the auxiliary heads after loading, so its
        # state_dict has no aux1.* / aux2.*; they run only in training.
        optional=(r"^aux1(/|$)", r"^aux2(/|$)"),
        transform_input=True,
    ),
)
