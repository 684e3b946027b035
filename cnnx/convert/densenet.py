"""torchvision DenseNet names -> cnnx names (`cnnx.models.densenet`).

torchvision numbers dense layers from 1 (`denselayer1`); cnnx from 0 (`block1_layer0`).
"""

from cnnx.convert.core import TorchMapping, register_mapping


def _dense_layer(m) -> str:
    block, layer, part = m[1], int(m[2]) - 1, m[4]
    return f"block{block}_layer{layer}/conv{part}/{'bn' if m[3] == 'norm' else 'conv'}"


register_mapping(
    "densenet",
    TorchMapping(
        renames=(
            (r"^features\.conv0$", "stem/conv"),
            (r"^features\.norm0$", "stem/bn"),
            (r"^features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)(\d)$", _dense_layer),
            (r"^features\.transition(\d+)\.norm$", r"transition\1/bn"),
            (r"^features\.transition(\d+)\.conv$", r"transition\1/conv"),
            (r"^features\.norm5$", "final_norm"),
            (r"^classifier$", "head/fc"),
        )
    ),
)
