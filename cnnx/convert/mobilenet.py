"""timm MobileNet v1 and torchvision MobileNet v2 names -> cnnx names."""

import itertools

from cnnx.convert.core import TorchMapping, register_mapping
from cnnx.models.mobilenet import V2_STAGES

# timm `mobilenetv1_100`: conv_stem/bn1, blocks.<stage>.<unit>.{conv_dw,bn1,conv_pw,bn2},
# classifier.
register_mapping(
    "mobilenetv1",
    TorchMapping(
        renames=(
            (r"^conv_stem$", "stem/conv"),
            (r"^bn1$", "stem/bn"),
            (r"^blocks\.(\d+)\.(\d+)\.", lambda m: f"stage{int(m[1]) + 1}_block{m[2]}/"),
            (r"/conv_dw$", "/dw/conv"),
            (r"/bn1$", "/dw/bn"),
            (r"/conv_pw$", "/pw/conv"),
            (r"/bn2$", "/pw/bn"),
            (r"^classifier$", "head/fc"),
        )
    ),
)


def _v2_block_renames():
    """torchvision numbers MobileNet v2's blocks flat (`features.1` … `features.17`); cnnx names
    them per stage, so one rename per block, derived from the stage table."""
    flat = itertools.count(1)
    renames = []
    for i, (t, _, n, _) in enumerate(V2_STAGES):
        for j in range(n):
            k, prefix = next(flat), f"stage{i + 1}_block{j}"
            # Inside a block: [expand (conv.0)], dw, pw-linear conv, its bn.
            parts = ["expand", "dw"] if t != 1 else ["dw"]
            for idx, part in enumerate(parts):
                renames.append((rf"^features\.{k}\.conv\.{idx}\.0$", f"{prefix}/{part}/conv"))
                renames.append((rf"^features\.{k}\.conv\.{idx}\.1$", f"{prefix}/{part}/bn"))
            renames.append((rf"^features\.{k}\.conv\.{len(parts)}$", f"{prefix}/project/conv"))
            renames.append((rf"^features\.{k}\.conv\.{len(parts) + 1}$", f"{prefix}/project/bn"))
    last = next(flat)
    renames += [
        (r"^features\.0\.0$", "stem/conv"),
        (r"^features\.0\.1$", "stem/bn"),
        (rf"^features\.{last}\.0$", "head_conv/conv"),
        (rf"^features\.{last}\.1$", "head_conv/bn"),
        (r"^classifier\.1$", "head/fc"),
    ]
    return tuple(renames)


register_mapping("mobilenet_v2", TorchMapping(renames=_v2_block_renames()))
