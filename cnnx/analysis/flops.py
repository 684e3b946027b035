"""Multiply-accumulates (MACs) per layer and in total, and torchvision's published figures.

Convention: one MAC is one multiply plus one add; FLOPs = 2 × MACs. Only convolutions and
matrix products count (dense layers and attention products); biases, norms, activations and
pooling are left out. This is how torchvision's `_ops` meta field ("GFLOPS" in its docs) is
counted, so `macs(...) / 1e9` compares with it directly.
"""

from cnnx.analysis.trace import Trace, trace_registered

MAC_KINDS = ("conv", "dwconv", "fc", "matmul")


def total_macs(tr: Trace) -> int:
    """MACs of a traced forward pass (whole batch)."""
    return sum(layer.macs for layer in tr.layers if layer.kind in MAC_KINDS)


def count_macs(name: str, resolution: int | None = None, batch: int = 1, **overrides) -> int:
    """MACs of a registered model's eval forward pass at `resolution` (default: the spec's)."""
    return total_macs(trace_registered(name, resolution, batch, **overrides))


def torchvision_reference(name: str) -> tuple[float, int] | None:
    """torchvision's published GMACs (`_ops`) for a registered model and the crop they apply to.

    Read offline from the installed torchvision's weights enum (no download). Takes the
    IMAGENET1K_V1 weights where present, else the enum's first entry.

    Returns:
      (gmacs, crop resolution), or None when the spec has no torchvision reference with
      weights (or torchvision is not installed).
    """
    from cnnx import models

    ref = models.get_spec(name).reference
    if not ref.startswith("torchvision:"):
        return None
    try:
        from torchvision.models import get_model_weights
    except ImportError:
        return None
    try:
        enum = get_model_weights(ref.split(":", 1)[1])
    except (ValueError, KeyError):
        return None
    entries = list(enum)
    entry = next((w for w in entries if w.name == "IMAGENET1K_V1"), entries[0] if entries else None)
    if entry is None or "_ops" not in entry.meta:
        return None
    crop = entry.transforms.keywords.get("crop_size", 224)
    crop = crop[0] if isinstance(crop, (tuple, list)) else crop
    return float(entry.meta["_ops"]), int(crop)


def distillation_macs(config, exp=None) -> dict[str, int] | None:
    """Forward MACs of one training image in a distillation run's train step; None without
    distillation (`train.distill`).

    The frozen teacher runs forward on every image the student trains on, at the student's
    training resolution (`data.image_size`); the student's backward pass adds about twice
    its forward, the teacher has none. The compiled step's own FLOPs (XLA's cost analysis,
    results.json's `gflop_per_step_per_chip`) include both.

    Args:
      config: the run's config.
      exp: its `cnnx.train.experiment.Experiment` (default: `setup(config)`).

    Returns:
      {'student', 'teacher', 'total'}: MACs per training image, total = student + teacher.

    Raises:
      ConfigError: no teacher model name, or a config the trainer refuses.
    """
    if config.train.get("distill", "none") == "none":
        return None
    from cnnx.analysis.trace import trace
    from cnnx.train.distill import teacher_module
    from cnnx.train.experiment import setup

    exp = exp or setup(config)
    teacher = teacher_module(config, exp.model.num_classes)
    student = int(total_macs(trace(exp.model, exp.input_shape)))
    teacher = int(total_macs(trace(teacher, exp.input_shape)))
    return {"student": student, "teacher": teacher, "total": student + teacher}
