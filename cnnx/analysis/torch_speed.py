"""The torchvision / timm counterpart of a registered model, timed like `benchmark`.

The counterpart is the spec's `reference` (`torchvision:resnet50`, `timm:inception_v4`), the
same network the parity tests convert weights from, randomly initialised. Inference is the
eval-mode forward under `torch.inference_mode`; the train step is forward, cross entropy (plus
0.3 x each auxiliary head's, as `cnnx.train.steps`), backward and `torch.optim.SGD` (momentum
0.9, weight decay 1e-4, `zero_grad(set_to_none=True)`): the same work as the cnnx step.
bfloat16 runs under `torch.autocast('cpu', torch.bfloat16)` (parameters stay float32, as in
cnnx). Default memory format (NCHW) unless `channels_last`; torch's default thread count.

torch must be imported before TensorFlow in the process (the reverse order crashes here);
`scripts/benchmark.py --vs_torch` imports it first.
"""

import statistics
import sys


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
            "first (scripts/benchmark.py --vs_torch does)."
        )


class TorchRunner:
    """The torch counterpart, built once, with one call per timed run of each kind.

    `scripts/benchmark.py --vs_torch` alternates these calls with cnnx's own runs
    (`cnnx.analysis.speed.time_interleaved`), so both frameworks are timed under the same
    load of a shared host.
    """

    def __init__(
        self,
        name: str,
        batch: int,
        resolution: int,
        dtype: str = "float32",
        channels_last: bool = False,
        seed: int = 0,
    ):
        _check_import_order()
        import contextlib

        import torch

        found = counterpart(name)
        if found is None:
            raise ValueError(f"{name} has no torchvision/timm reference to time.")
        build, self.reference = found
        torch.manual_seed(seed)
        self.model = build()
        self.x = torch.randn(batch, 3, resolution, resolution)
        self.y = torch.randint(0, 1000, (batch,))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self._autocast = (
            (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
            if dtype == "bfloat16"
            else contextlib.nullcontext
        )
        self._opt = torch.optim.SGD(
            self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4
        )
        self._loss = torch.nn.CrossEntropyLoss()
        self._torch = torch
        self.info = {
            "reference": self.reference,
            "threads": torch.get_num_threads(),
            "channels_last": channels_last,
            "version": torch.__version__,
        }

    def train_once(self) -> None:
        """One SGD step: forward, cross entropy (+ 0.3 x auxiliary heads), backward, update."""
        self.model.train()
        self._opt.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.model(self.x)
            if isinstance(out, tuple):  # torchvision's GoogLeNet / Inception v3 outputs
                main, *aux = [o for o in out if o is not None]
                loss = self._loss(main, self.y) + sum(0.3 * self._loss(a, self.y) for a in aux)
            else:
                loss = self._loss(out, self.y)
        loss.backward()
        self._opt.step()

    def infer_once(self) -> None:
        """One eval-mode forward pass under `torch.inference_mode`."""
        self.model.eval()
        with self._torch.inference_mode(), self._autocast():
            self.model(self.x)


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
    """Inference and train-step images/s of the torch counterpart alone (None if none)."""
    from cnnx.analysis.speed import time_runs

    if counterpart(name) is None:
        return None
    runner = TorchRunner(name, batch, resolution, dtype, channels_last, seed)
    train = time_runs(runner.train_once, (), warmup, repeats)
    inference = time_runs(runner.infer_once, (), warmup, repeats)
    return {
        **runner.info,
        "train_ips": batch / statistics.median(train),
        "train_ips_best": batch / min(train),
        "infer_ips": batch / statistics.median(inference),
        "infer_ips_best": batch / min(inference),
    }


def matmul_ceiling(dtype: str = "float32", size: int = 2048, warmup: int = 2, repeats: int = 5):
    """GFLOP/s of torch's (size x size) @ (size x size) product, timed as
    `cnnx.analysis.benchmark.matmul_ceiling` times XLA's: the host's GEMM speed through
    torch's library (oneDNN / MKL) at torch's default thread count, median of `repeats`."""
    _check_import_order()
    import torch

    from cnnx.analysis.speed import time_runs

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(getattr(torch, dtype))
    b = torch.randn(size, size, generator=gen).to(getattr(torch, dtype))
    times = time_runs(torch.mm, (a, b), warmup, repeats)
    return 2.0 * size**3 / statistics.median(times) / 1e9
