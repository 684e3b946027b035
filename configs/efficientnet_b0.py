"""EfficientNet-B0 on ImageNet with the paper's recipe: `configs/efficientnet.py:b0`.

    python train.py --config=configs/efficientnet_b0.py --workdir=gs://BUCKET/efficientnet_b0
    python train.py --config=configs/efficientnet_b0.py:tf        # timm tf_efficientnet_b0 layout
    python train.py --config=configs/efficientnet_b0.py:smoke     # about a minute, synthetic data

arg: optionally 'tf' and/or 'smoke', as for configs/efficientnet.py (which takes b0 to b7).
Expected: about 77.7% top-1 (torchvision weights: 77.69%; paper 77.1%), on an accelerator.
"""

from configs import efficientnet


def get_config(arg: str | None = None):
    return efficientnet.get_config(",".join(filter(None, ("b0", arg))))
