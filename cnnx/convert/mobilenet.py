"""timm MobileNet v1 and torchvision MobileNet v2 / v3 names -> cnnx names."""

import itertools

from cnnx.convert.core import TorchMapping, register_mapping
from cnnx.models.mobilenet import V2_STAGES, V3_TABLES

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


def _v3_renames(arch: str):
    """torchvision MobileNet v3: `features.<k>.block.<m>` where a block's Sequential holds
    [expand], dw, [se], project; `features.<last>` the head conv; `classifier.0` / `.3` the
    pre-logits layer and the classifier."""
    stages, _ = V3_TABLES[arch]
    flat, in_features = itertools.count(1), 16
    renames = [(r"^features\.0\.0$", "stem/conv"), (r"^features\.0\.1$", "stem/bn")]
    for i, stage in enumerate(stages):
        for j, (_, exp, out, se, _, _) in enumerate(stage):
            k, prefix = next(flat), f"stage{i + 1}_block{j}"
            parts = (["expand"] if exp != in_features else []) + ["dw"] + (["se"] if se else [])
            for m, part in enumerate([*parts, "project"]):
                renames.append((rf"^features\.{k}\.block\.{m}\.", f"{prefix}/{part}/"))
            in_features = out
    last = next(flat)
    renames += [
        (rf"^features\.{last}\.", "head_conv/"),
        (r"/0$", "/conv"),
        (r"/1$", "/bn"),
        (r"^classifier\.0$", "pre_logits"),
        (r"^classifier\.3$", "head/fc"),
    ]
    return tuple(renames)


# Large and small number their blocks differently, so each is its own family with one mapping.
for _arch in V3_TABLES:
    register_mapping(f"mobilenet_v3_{_arch}", TorchMapping(renames=_v3_renames(_arch)))
