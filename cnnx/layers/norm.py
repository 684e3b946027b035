"""Normalisation layers.

BatchNorm and synchronisation: cnnx runs one `jax.jit` over a global batch sharded across every
device of every host. `nn.BatchNorm` inside that program computes its mean and variance over the
whole global array, so XLA inserts the cross-device reductions itself: batch statistics are
synchronised over the global batch (SyncBN) without any `axis_name`. Per-device ("ghost") batch
norm would need an explicit reshape into groups.
"""

import flax.linen as nn
import jax.numpy as jnp


def batch_norm(
    train: bool,
    *,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    zero_init: bool = False,
    name: str | None = None,
) -> nn.BatchNorm:
    """A BatchNorm synchronised over the global batch (see module docstring).

    Args:
      train: use batch statistics and update the running averages (True) or use the running
        averages (False).
      momentum: running-average decay. torchvision's momentum 0.1 is 0.9 here.
      epsilon: added to the variance (1e-5 torch, 1e-3 TensorFlow EfficientNet).
      dtype: compute dtype; statistics are always kept in float32 (`param_dtype`).
      param_dtype: dtype of scale, bias and the running statistics.
      zero_init: start the scale at zero, so a residual branch starts as the identity.
      name: module name.
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones,
        name=name,
    )


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels (Krizhevsky et al. 2012, §3.3).

    b_c = a_c / (k + alpha / size * sum_{c' in window(c)} a_c'^2) ** beta, with the window of
    `size` channels centred on c; this is torch's `nn.LocalResponseNorm` convention (alpha is
    divided by `size`). The AlexNet paper writes alpha undivided: pass `alpha=1e-4 * size` to
    reproduce it exactly.
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    @nn.compact
    def __call__(self, x):
        """Normalises each channel by its neighbours' squared activity.

        Args:
          x: (..., C) activations (NHWC: across the last axis).

        Returns:
          x's shape and dtype (computed in float32).
        """
        sq = jnp.square(x.astype(jnp.float32))
        half = self.size // 2
        # Sum over a window of channels, zero padded like torch (pad before: size//2, after:
        # (size-1)//2).
        padded = jnp.pad(sq, [(0, 0)] * (x.ndim - 1) + [(half, (self.size - 1) // 2)])
        channels = x.shape[-1]
        window = sum(padded[..., i : i + channels] for i in range(self.size))
        div = (self.k + self.alpha / self.size * window) ** self.beta
        return (x / div).astype(x.dtype)
