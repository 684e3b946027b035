"""EfficientNet-B1 on ImageNet with the paper's recipe (see `cnnx.train.recipes.efficientnet`).

    python train.py --config=configs/efficientnet_b1.py --workdir=gs://BUCKET/efficientnet_b1
    python train.py --config=configs/efficientnet_b1.py:tf        # timm tf_efficientnet_b1 layout
    python train.py --config=configs/efficientnet_b1.py:smoke     # seconds, synthetic data

Expected: about 78.6% (torchvision), 79.1% (paper).
"""

from cnnx.train.recipes import efficientnet


def get_config(arg: str | None = None):
    return efficientnet("b1", arg)
