"""The torchvision / timm counterpart of a registered model, timed like `benchmark`.

The counterpart is the spec's `reference` (`torchvision:resnet50`, `timm:inception_v4`), the
same network the parity tests convert weights from, randomly initialised. Inference is the
eval-mode forward under `torch.inference_mode`; the train step is forward, cross entropy (plus
0.3 x each auxiliary head's, as `cnnx.train.steps`), backward and `torch.optim.SGD` (momentum
0.9, weight decay 1e-4, `zero_grad(set_to_none=True)`): the same work as the cnnx step.
bfloat16 runs under `torch.autocast('cpu', torch.bfloat16)` (parameters stay float32, as in
cnnx). Default memory format (NCHW) unless `channels_last`; torch's default thread count.

torch must be imported before TensorFlow in the process (the reverse order crashes here);
`scripts/benchmark.py --vs-torch` imports it first.
"""

import statistics
import sys
import time


def counterpart(name: str):
    """(constructor, 'source:name') of a registered model's reference, or None."""
    from cnnx import models

    ref = models.get_spec(name).reference
    source, _, ref_name = ref.partition(":")
    if source == "torchvision":
        import torchvision

        return (lambda: torchvision.models.get_model(ref_name, weights=None)), ref
    if source == "timm":
        import timm

        return (lambda: timm.create_model(ref_name, pretrained=False)), ref
    return None


def _check_import_order():
    if "torch" not in sys.modules and "tensorflow" in sys.modules:
        raise RuntimeError(
            "TensorFlow was imported before torch; importing torch now crashes. Import torch "
            "first (scripts/benchmark.py --vs-torch does)."
        )


def benchmark_torch(
    name: str,
    batch: int,
    resolution: int,
    dtype: str = "float32",
    warmup: int = 2,
    repeats: int = 5,
    channels_last: bool = False,
    seed: int = 0,
) -> dict | None:
    """Inference and train-step images/s of the torch counterpart (None if there is none)."""
    _check_import_order()
    import contextlib

    import torch

    found = counterpart(name)
    if found is None:
        return None
    build, ref = found
    torch.manual_seed(seed)
    model = build()
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, 1000, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if dtype == "bfloat16"
        else contextlib.nullcontext
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = model(x)
            if isinstance(out, tuple):  # torchvision's GoogLeNet / Inception v3 outputs
                main, *aux = [o for o in out if o is not None]
                loss = loss_fn(main, y) + sum(0.3 * loss_fn(a, y) for a in aux)
            else:
                loss = loss_fn(out, y)
        loss.backward()
        opt.step()

    def infer():
        with torch.inference_mode(), autocast():
            model(x)

    def timed(fn):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return times

    model.train()
    train = timed(train_step)
    model.eval()
    inference = timed(infer)
    return {
        "reference": ref,
        "train_ips": batch / statistics.median(train),
        "train_ips_best": batch / min(train),
        "infer_ips": batch / statistics.median(inference),
        "infer_ips_best": batch / min(inference),
        "threads": torch.get_num_threads(),
        "channels_last": channels_last,
        "version": torch.__version__,
    }
