"""Classifier heads."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx.layers.dense import Dense


class ClassifierHead(nn.Module):
    """Global average pooling, dropout, then a linear classifier.

    With `num_classes=0` it returns the pooled features, which is how every cnnx model
    exposes its backbone (for linear probes and transfer).
    """

    num_classes: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Pools, drops out and classifies.

        Args:
          x: (B, H, W, C) features, or (B, C) already pooled.
          train: dropout on (needs a 'dropout' rng).

        Returns:
          (B, num_classes) logits, or the (B, C) pooled features when `num_classes` is 0.
        """
        if x.ndim == 4:
            x = jnp.mean(x, axis=(1, 2))
        if self.num_classes == 0:
            return x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="fc")(x)
