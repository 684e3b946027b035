"""torchvision EfficientNet and timm tf_efficientnet names -> cnnx names.

Both number stages the same way as the paper's Table 1; only the prefixes differ:
torchvision `features.0` (stem), `features.<1..7>.<j>.block.<k>` (blocks), `features.8` (head
conv), `classifier.1`; timm `conv_stem`/`bn1`, `blocks.<0..6>.<j>.<conv_*|bn*|se>`,
`conv_head`/`bn2`, `classifier`.
"""

from cnnx.convert.core import TorchMapping, register_mapping
from cnnx.models.efficientnet import STAGES

_HEAD = len(STAGES) + 1  # torchvision's features index of the head conv

# Inside a torchvision MBConv, `block` is a Sequential: [expand], dw, se, project. Stage 1
# (expansion 1) has no expand conv, so its indices shift by one.
register_mapping(
    "efficientnet",
    TorchMapping(
        renames=(
            (r"^features\.0\.0$", "stem/conv"),
            (r"^features\.0\.1$", "stem/bn"),
            (rf"^features\.{_HEAD}\.0$", "head_conv/conv"),
            (rf"^features\.{_HEAD}\.1$", "head_conv/bn"),
            (r"^features\.1\.(\d+)\.block\.0\.", r"stage1_block\1/dw/"),
            (r"^features\.1\.(\d+)\.block\.1\.", r"stage1_block\1/se/"),
            (r"^features\.1\.(\d+)\.block\.2\.", r"stage1_block\1/project/"),
            (r"^features\.(\d+)\.(\d+)\.block\.0\.", r"stage\1_block\2/expand/"),
            (r"^features\.(\d+)\.(\d+)\.block\.1\.", r"stage\1_block\2/dw/"),
            (r"^features\.(\d+)\.(\d+)\.block\.2\.", r"stage\1_block\2/se/"),
            (r"^features\.(\d+)\.(\d+)\.block\.3\.", r"stage\1_block\2/project/"),
            (r"/0$", "/conv"),
            (r"/1$", "/bn"),
            (r"^classifier\.1$", "head/fc"),
        )
    ),
)

# timm blocks: stage 0 is a DepthwiseSeparableConv (conv_dw/bn1, se, conv_pw/bn2); the others
# are InvertedResidual (conv_pw/bn1, conv_dw/bn2, se, conv_pwl/bn3).
register_mapping(
    "tf_efficientnet",
    TorchMapping(
        renames=(
            (r"^conv_stem$", "stem/conv"),
            (r"^bn1$", "stem/bn"),
            (r"^conv_head$", "head_conv/conv"),
            (r"^bn2$", "head_conv/bn"),
            (r"^blocks\.0\.(\d+)\.conv_dw$", r"stage1_block\1/dw/conv"),
            (r"^blocks\.0\.(\d+)\.bn1$", r"stage1_block\1/dw/bn"),
            (r"^blocks\.0\.(\d+)\.conv_pw$", r"stage1_block\1/project/conv"),
            (r"^blocks\.0\.(\d+)\.bn2$", r"stage1_block\1/project/bn"),
            (r"^blocks\.(\d+)\.(\d+)\.", lambda m: f"stage{int(m[1]) + 1}_block{m[2]}/"),
            (r"/conv_pw$", "/expand/conv"),
            (r"/bn1$", "/expand/bn"),
            (r"/conv_dw$", "/dw/conv"),
            (r"/bn2$", "/dw/bn"),
            (r"/conv_pwl$", "/project/conv"),
            (r"/bn3$", "/project/bn"),
            (r"/se\.conv_reduce$", "/se/fc1"),
            (r"/se\.conv_expand$", "/se/fc2"),
            (r"^classifier$", "head/fc"),
        )
    ),
)
