"""torchvision models exactly as their pretrained builders make them, offline.

`weights=...` makes a builder set constructor flags that are not in any state_dict
(GoogLeNet / Inception v3: `transform_input=True`; GoogLeNet then deletes its aux heads).
Here the builder runs with a weights enum whose download is replaced by a random model's
state_dict, so what comes back is the pretrained model's structure and flags, with random
weights and BatchNorm statistics calibrated on a few random batches.
"""

import numpy as np
import torch
import torchvision
from torchvision.models import get_model_weights

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def pretrained_like(arch: str, monkeypatch, resolution: int | None, **kwargs) -> torch.nn.Module:
    """`torchvision.models.<arch>(weights=IMAGENET1K_V1, **kwargs)` without a download.

    BatchNorm statistics are calibrated at `resolution` (None: left as built).
    """
    weights = get_model_weights(arch).IMAGENET1K_V1
    torch.manual_seed(0)
    # The donor has every tensor the real file has (aux heads included).
    donor = torchvision.models.get_model(
        arch, weights=None, aux_logits=True, init_weights=False, num_classes=1000
    )
    monkeypatch.setattr(type(weights), "get_state_dict", lambda self, *a, **k: donor.state_dict())
    model = torchvision.models.get_model(arch, weights=weights, **kwargs)
    return model.eval() if resolution is None else calibrate_bn(model, resolution)


def calibrate_bn(model: torch.nn.Module, resolution: int, batches: int = 3) -> torch.nn.Module:
    """BatchNorm running statistics from a few random batches (ImageNet-normalised input)."""
    g = torch.Generator().manual_seed(1)
    # Training-only heads stay out: they need larger inputs, and inference never runs them.
    heads = {n: getattr(model, n) for n in ("aux1", "aux2", "AuxLogits") if hasattr(model, n)}
    for n in heads:
        setattr(model, n, None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the batches
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(4, 3, resolution, resolution, generator=g))
    for n, head in heads.items():
        setattr(model, n, head)
    return model.eval()


def raw_images(n: int, resolution: int, seed: int = 0) -> np.ndarray:
    """Pixels in [0, 255], NHWC, as a decoder gives them."""
    return np.random.RandomState(seed).randint(0, 256, (n, resolution, resolution, 3))


def torch_logits(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    """The torch model on `pixels` normalised as torchvision's transforms do (ImageNet)."""
    x = (pixels / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))).numpy()


def normalise(pixels: np.ndarray, mean, std) -> np.ndarray:
    """cnnx's `normalize` op: (x / 255 - mean) / std, NHWC float32."""
    return ((pixels / 255.0 - np.asarray(mean)) / np.asarray(std)).astype(np.float32)


def rel_error(out, ref) -> float:
    return float(np.abs(np.asarray(out) - ref).max() / np.abs(ref).max())
