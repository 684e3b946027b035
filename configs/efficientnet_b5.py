"""EfficientNet-B5 on ImageNet with the paper's recipe (see `cnnx.train.recipes.efficientnet`).

    python train.py --config=configs/efficientnet_b5.py --workdir=gs://BUCKET/efficientnet_b5
    python train.py --config=configs/efficientnet_b5.py:tf        # timm tf_efficientnet_b5 layout
    python train.py --config=configs/efficientnet_b5.py:smoke     # seconds, synthetic data

Expected: about 83.4% (torchvision), 83.6% (paper).
"""

from cnnx.train.recipes import efficientnet


def get_config(arg: str | None = None):
    return efficientnet("b5", arg)
