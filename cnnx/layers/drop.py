"""Stochastic depth (drop-path): drop a whole residual branch per example during training."""

import flax.linen as nn
import jax
import jax.numpy as jnp


def drop_path_rates(max_rate: float, num_blocks: int) -> list[float]:
    """Linear decay rule of Huang et al. (2016): block i of n drops with max_rate * i / (n - 1)."""
    if num_blocks <= 1:
        return [0.0] * num_blocks if max_rate == 0 else [float(max_rate)] * num_blocks
    return [max_rate * i / (num_blocks - 1) for i in range(num_blocks)]


class DropPath(nn.Module):
    """Zeroes a residual branch for a random subset of examples and rescales the rest.

    Uses the 'dropout' rng stream, like `nn.Dropout`. Identity at evaluation or with rate 0.
    """

    rate: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Drops whole examples of a residual branch (stochastic depth).

        Args:
          x: (B, ...) branch output.
          train: drop each example with probability `rate` and scale the kept ones by 1 / (1 - rate)
            (needs a 'dropout' rng); False returns x unchanged.

        Returns:
          x's shape and dtype.
        """
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
        return jnp.where(mask, x / keep, jnp.zeros_like(x))
