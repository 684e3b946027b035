"""torchvision Inception v3 names -> cnnx names (cnnx mirrors torchvision's module names)."""

from cnnx.convert.core import TorchMapping, register_mapping

register_mapping(
    "inception_v3",
    TorchMapping(
        renames=((r"^fc$", "head/fc"),),
        # A model built with aux_logits=False saves no AuxLogits.*; the head runs only in training.
        optional=(r"^AuxLogits(/|$)",),
        transform_input=True,
    ),
)
