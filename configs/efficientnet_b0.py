"""EfficientNet-B0 on ImageNet with the paper's recipe (see `cnnx.train.recipes.efficientnet`).

    python train.py --config=configs/efficientnet_b0.py --workdir=gs://BUCKET/efficientnet_b0
    python train.py --config=configs/efficientnet_b0.py:tf        # timm tf_efficientnet_b0 layout
    python train.py --config=configs/efficientnet_b0.py:smoke     # seconds, synthetic data

Expected: about 77.7% top-1 (torchvision weights: 77.69%; paper 77.1%).
"""

from cnnx.train.recipes import efficientnet


def get_config(arg: str | None = None):
    return efficientnet("b0", arg)
