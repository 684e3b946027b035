"""The torchvision / timm module a registered model reproduces (`ModelSpec.reference`).

`reference_model(name, **overrides)` builds it freshly initialised, with the options of a
cnnx model translated: the head size, and ViT's input resolution (torchvision `image_size`,
timm `img_size`). Options that change nothing at inference (dtype, dropout, drop-path,
rematerialisation) are ignored; any other option that differs from the variant's own value
has no counterpart in the reference, and is refused rather than exported into a model that
computes something else. Needs torch and torchvision or timm (requirements-dev.txt).
"""

import warnings

from cnnx.convert.core import ConversionError

# cnnx option -> the reference library's constructor argument.
_TRANSLATED = {
    "torchvision": {"num_classes": "num_classes", "image_size": "image_size"},
    "timm": {"num_classes": "num_classes", "image_size": "img_size"},
}
# cnnx options with no effect on the variables or on inference.
_INFERENCE_NEUTRAL = frozenset(
    {
        "dtype",
        "param_dtype",
        "dropout_rate",
        "drop_path_rate",
        "attention_dropout",
        "encoder_dropout",
        "remat",
    }
)


def _plain(value):
    """Lists (as config.json stores tuples) as tuples, so options compare by value."""
    return tuple(map(_plain, value)) if isinstance(value, list | tuple) else value


def reference_library(name: str) -> tuple[str, str] | None:
    """(library, constructor name) of a model's reference, e.g. ('timm', 'inception_v4');
    None for a model without one (`lenet5`, `nin`)."""
    from cnnx import models

    reference = models.get_spec(name).reference
    if not reference:
        return None
    library, arch = reference.split(":", 1)
    return library, arch


def reference_kwargs(name: str, **overrides) -> dict:
    """The reference's constructor arguments for cnnx model `name` built with `overrides`.

    Raises:
      ConversionError: `name` has no reference, or an override has no counterpart in it.
    """
    from cnnx import models

    found = reference_library(name)
    if found is None:
        raise ConversionError(
            f"{name} has no torchvision / timm reference, so there are no torch names to "
            "write; export its own names to safetensors instead."
        )
    library, arch = found
    variant = models.create(name)
    kwargs, foreign = {}, []
    for key, value in overrides.items():
        if key in _INFERENCE_NEUTRAL:
            continue
        if key in _TRANSLATED[library]:
            if key == "num_classes" or _plain(value) != _plain(getattr(variant, key)):
                kwargs[_TRANSLATED[library][key]] = value
        elif _plain(value) != _plain(getattr(variant, key, None)):
            foreign.append(f"{key}={value!r}")
    if foreign:
        raise ConversionError(
            f"{name} with {', '.join(foreign)} has no counterpart in its reference "
            f"({library}:{arch}), so its weights have no {library} form; export its own "
            "names to safetensors instead."
        )
    return kwargs


def reference_model(name: str, **overrides):
    """The reference torch module of cnnx model `name`, freshly initialised, in eval mode.

    Args:
      name: cnnx registry name with a reference (`resnet50` -> torchvision's resnet50).
      **overrides: the cnnx model's options (`num_classes=10`, ViT's `image_size=384`).

    Returns:
      A `torch.nn.Module`. torchvision's GoogLeNet / Inception v3 come with their auxiliary
      heads and `transform_input=False` (cnnx feeds them normalised input as it is).

    Raises:
      ConversionError: no reference, an option without counterpart (`reference_kwargs`), or
        torch / torchvision / timm not installed.
    """
    kwargs = reference_kwargs(name, **overrides)
    library, arch = reference_library(name)
    try:
        module = __import__(library)
    except ImportError:
        raise ConversionError(
            f"{name}'s reference is {library}:{arch}: install torch and {library} "
            "(pip install -r requirements-dev.txt) to write its names."
        ) from None
    with warnings.catch_warnings():  # torchvision's init_weights FutureWarning and the like
        warnings.simplefilter("ignore")
        if library == "timm":
            model = module.create_model(arch, pretrained=False, **kwargs)
        else:
            model = module.models.get_model(arch, weights=None, **kwargs)
    return model.eval()
