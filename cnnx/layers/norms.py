"""Normalisation layers selectable by name: `make_norm('batch' | 'layer' | 'group' |
'instance' | 'lrn', ...)`.

- batch: `cnnx.layers.norm.batch_norm`, synchronised over the global batch (see that module).
- layer: normalises over the channels of each position (ConvNeXt's channels-last LayerNorm,
  Ba et al. 2016); `nn.LayerNorm` on the last axis.
- group: Wu & He 2018, 32 groups of channels normalised over (H, W, channels in the group).
- instance: Ulyanov et al. 2016, each channel of each image over (H, W) (group size 1).
- lrn: AlexNet's local response normalisation across channels (no parameters).

Statistics are computed in float32 whatever the compute dtype; parameters are float32.
"""

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers.norm import LocalResponseNorm, batch_norm

NORMS = ("batch", "layer", "group", "instance", "lrn")


def make_norm(
    name: str,
    *,
    train: bool = False,
    epsilon: float | None = None,
    num_groups: int = 32,
    dtype=jnp.float32,
    zero_init: bool = False,
    module_name: str | None = None,
    **kwargs,
) -> nn.Module:
    """A normalisation layer by name.

    Args:
      name: one of NORMS.
      train: batch norm only: batch statistics and running-average updates when True.
      epsilon: added to the variance (default: 1e-5; 1e-6 for layer norm as ConvNeXt).
      num_groups: group norm's number of groups (must divide the channels).
      dtype: compute dtype.
      zero_init: start the scale at zero (residual branches start as the identity).
      module_name: the Flax module name.
      **kwargs: extra options of the underlying layer (momentum for batch; size, alpha, beta,
        k for lrn).

    Returns:
      A Flax module to call on an NHWC (or (..., C)) array.
    """
    scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
    if name == "batch":
        return batch_norm(
            train,
            epsilon=1e-5 if epsilon is None else epsilon,
            dtype=dtype,
            zero_init=zero_init,
            name=module_name,
            **kwargs,
        )
    if name == "layer":
        return nn.LayerNorm(
            epsilon=1e-6 if epsilon is None else epsilon,
            dtype=dtype,
            param_dtype=jnp.float32,
            scale_init=scale_init,
            name=module_name,
            **kwargs,
        )
    if name in ("group", "instance"):
        groups = dict(num_groups=None, group_size=1) if name == "instance" else {}
        return nn.GroupNorm(
            **(groups or dict(num_groups=num_groups)),
            epsilon=1e-5 if epsilon is None else epsilon,
            dtype=dtype,
            param_dtype=jnp.float32,
            scale_init=scale_init,
            name=module_name,
            **kwargs,
        )
    if name == "lrn":
        return LocalResponseNorm(name=module_name, **kwargs)
    raise ValueError(f"Unknown norm {name!r}; use one of {', '.join(NORMS)}.")
