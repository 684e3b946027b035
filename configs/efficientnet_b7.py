"""EfficientNet-B7 on ImageNet with the paper's recipe (see `cnnx.train.recipes.efficientnet`).

    python train.py --config=configs/efficientnet_b7.py --workdir=gs://BUCKET/efficientnet_b7
    python train.py --config=configs/efficientnet_b7.py:tf        # timm tf_efficientnet_b7 layout
    python train.py --config=configs/efficientnet_b7.py:smoke     # seconds, synthetic data

Expected: about 84.1% (torchvision), 84.3% (paper).
"""

from cnnx.train.recipes import efficientnet


def get_config(arg: str | None = None):
    return efficientnet("b7", arg)
