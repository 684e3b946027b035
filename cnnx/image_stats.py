"""Per-channel image statistics that inputs are normalised with: `(pixels / 255 - mean) / std`.

The one home of these constants: the config schema's default (`data.mean`, `data.std`), the
pipeline's `PPContext` and the model registry (what reference weights expect) read them here.
This module imports nothing and sits below the data, the models and the schema (none of
them imports another for these numbers), so the schema stays free of TensorFlow and JAX.
"""

# ImageNet's channel statistics, as torchvision's and timm's ImageNet weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (x - 0.5) / 0.5: TF-trained and timm "inception" weights.
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
