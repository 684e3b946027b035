"""timm NASNet-A names -> cnnx names (cnnx keeps timm's cell and branch names)."""

from cnnx.convert.core import TorchMapping, register_mapping

register_mapping(
    "nasnet",
    TorchMapping(
        renames=(
            (r"^conv0\.conv$", "conv0"),
            (r"^conv0\.bn$", "conv0_bn"),
            # The factorised reduction's two paths and their BatchNorm form one module.
            (r"\.path_(\d)\.conv$", r".reduce.path_\1"),
            (r"\.final_path_bn$", ".reduce.final_path_bn"),
            (r"^last_linear$", "head/fc"),
        )
    ),
)
