"""EfficientNet-B6 on ImageNet with the paper's recipe (see `cnnx.train.recipes.efficientnet`).

    python train.py --config=configs/efficientnet_b6.py --workdir=gs://BUCKET/efficientnet_b6
    python train.py --config=configs/efficientnet_b6.py:tf        # timm tf_efficientnet_b6 layout
    python train.py --config=configs/efficientnet_b6.py:smoke     # seconds, synthetic data

Expected: about 84.0% (torchvision), 84.0% (paper).
"""

from cnnx.train.recipes import efficientnet


def get_config(arg: str | None = None):
    return efficientnet("b6", arg)
