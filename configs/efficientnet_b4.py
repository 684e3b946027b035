"""EfficientNet-B4 on ImageNet with the paper's recipe (see `cnnx.train.recipes.efficientnet`).

    python train.py --config=configs/efficientnet_b4.py --workdir=gs://BUCKET/efficientnet_b4
    python train.py --config=configs/efficientnet_b4.py:tf        # timm tf_efficientnet_b4 layout
    python train.py --config=configs/efficientnet_b4.py:smoke     # seconds, synthetic data

Expected: about 83.4% (torchvision), 82.9% (paper).
"""

from cnnx.train.recipes import efficientnet


def get_config(arg: str | None = None):
    return efficientnet("b4", arg)
