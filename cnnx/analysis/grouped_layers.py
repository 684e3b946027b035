"""Single grouped and depthwise convolutions timed alone: XLA's, the platform's own, torch's.

`scripts/benchmark.py --depthwise_layers` prints them (the README's per-layer table).
"""

import functools
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnx import backends
from cnnx.analysis.speed import time_interleaved

# The grouped layers of issue 20's table: depthwise (MobileNet v2, EfficientNet, ConvNeXt
# shapes) and one ResNeXt-50 32x4d layer: (height = width, channels, kernel, stride, groups).
DEPTHWISE_LAYERS = (
    (112, 32, 3, 1, 32),
    (56, 144, 3, 1, 144),
    (28, 240, 5, 1, 240),
    (56, 96, 7, 1, 96),
    (112, 96, 3, 2, 96),
    (56, 128, 3, 1, 32),
)
# XLA's grouped (not depthwise) convolution takes minutes per training step on the ResNeXt
# layer (118 s measured); it is timed only for depthwise layers.


def depthwise_layers(
    batch: int = 8, layers=DEPTHWISE_LAYERS, warmup: int = 2, repeats: int = 7, torch_too=True
) -> list[dict]:
    """One grouped convolution (torch padding) at a time: XLA's, the platform's own, torch's.

    XLA: `lax.conv_general_dilated(feature_group_count=groups)` (depthwise layers only); the
    platform's own convolutions by name (`cnnx.backends.conv_kernels()`; on the CPU cnnx:
    cnnx's depthwise formulation on XLA, depthwise layers only, and onednn: oneDNN's, when
    the extension is built); torch: `nn.Conv2d(groups=...)` in channels-last. Forward, and
    forward + input and weight gradients, each jitted (torch: eager), timed in alternation
    (`time_interleaved`), float32.

    Returns:
      Per layer: 'layer' ('HxWxC kxk /s [gG]'), and '{xla,cnnx,onednn,torch}_{fwd,train}_ms'
      (medians) for the implementations timed.
    """
    kernels = backends.conv_kernels()
    rows = []
    rng = np.random.default_rng(0)
    for size, channels, k, stride, groups in layers:
        pad = [((k - 1) // 2, (k - 1) // 2)] * 2
        x = jnp.asarray(rng.standard_normal((batch, size, size, channels), np.float32))
        w = 0.1 * rng.standard_normal((k, k, channels // groups, channels), np.float32)
        w = jnp.asarray(w)

        def xla(x, w, stride=stride, pad=pad, groups=groups):
            dn = ("NHWC", "HWIO", "NHWC")
            return lax.conv_general_dilated(
                x, w, (stride, stride), pad, dimension_numbers=dn, feature_group_count=groups
            )

        candidates = {"xla": xla} if groups == channels else {}
        for label, kernel in kernels.items():
            if groups == channels or not kernel.depthwise_only:
                candidates[label] = functools.partial(
                    _kernel, kernel.fn, strides=(stride, stride), padding=pad, groups=groups
                )
        dy = jnp.ones(jax.eval_shape(xla, x, w).shape, jnp.float32)
        runs = {}
        for label, conv in candidates.items():
            fwd = jax.jit(conv)
            train = jax.jit(functools.partial(_forward_backward, conv))
            runs[f"{label}_fwd"] = functools.partial(fwd, x, w)
            runs[f"{label}_train"] = functools.partial(train, x, w, dy)
        if torch_too:
            runs.update(_torch_grouped(x, w, stride, (k - 1) // 2, groups))
        row = {"layer": f"{size}x{size}x{channels} {k}x{k} /{stride}"}
        if groups != channels:
            row["layer"] += f" g{groups}"
        for kind in ("fwd", "train"):
            chosen = {name: run for name, run in runs.items() if name.endswith(kind)}
            times = time_interleaved(chosen, warmup, repeats)
            row.update({f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()})
        rows.append(row)
    return rows


def _kernel(fn, x, w, *, strides, padding, groups):
    return fn(x, w, strides, padding, groups)


def _forward_backward(conv, x, w, dy):
    y, vjp = jax.vjp(conv, x, w)
    return y, vjp(dy)


def _torch_grouped(x, w, stride: int, pad: int, groups: int) -> dict:
    """torch's channels-last grouped convolution of the same x, w: forward and train runs."""
    import torch

    c = x.shape[-1]
    conv = torch.nn.Conv2d(c, w.shape[-1], w.shape[0], stride, pad, groups=groups, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.array(w).transpose(3, 2, 0, 1).copy()))
    conv = conv.to(memory_format=torch.channels_last)
    tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    tx = tx.contiguous(memory_format=torch.channels_last).requires_grad_()

    def forward():
        with torch.inference_mode():
            conv(tx)

    def train():
        tx.grad, conv.weight.grad = None, None
        out = conv(tx)
        out.backward(torch.ones_like(out))

    return {"torch_fwd": forward, "torch_train": train}
