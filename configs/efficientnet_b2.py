"""EfficientNet-B2 on ImageNet with the paper's recipe (see `cnnx.train.recipes.efficientnet`).

    python train.py --config=configs/efficientnet_b2.py --workdir=gs://BUCKET/efficientnet_b2
    python train.py --config=configs/efficientnet_b2.py:tf        # timm tf_efficientnet_b2 layout
    python train.py --config=configs/efficientnet_b2.py:smoke     # seconds, synthetic data

Expected: about 80.6% (torchvision), 80.1% (paper).
"""

from cnnx.train.recipes import efficientnet


def get_config(arg: str | None = None):
    return efficientnet("b2", arg)
