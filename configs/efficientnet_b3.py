"""EfficientNet-B3 on ImageNet with the paper's recipe (see `cnnx.train.recipes.efficientnet`).

    python train.py --config=configs/efficientnet_b3.py --workdir=gs://BUCKET/efficientnet_b3
    python train.py --config=configs/efficientnet_b3.py:tf        # timm tf_efficientnet_b3 layout
    python train.py --config=configs/efficientnet_b3.py:smoke     # seconds, synthetic data

Expected: about 82.0% (torchvision), 81.6% (paper).
"""

from cnnx.train.recipes import efficientnet


def get_config(arg: str | None = None):
    return efficientnet("b3", arg)
