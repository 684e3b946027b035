"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 1998, §II.B and Table I).

Layers as in the paper, on a 32×32×1 input:
  C1  6 @ 5×5 convolution
  S2  2×2 subsampling: sum × trainable coefficient + bias
  C3  16 @ 5×5, partial connections of Table I (60 of 96)
  S4  2×2 subsampling
  C5  120 @ 5×5 (a full connection to the 5×5 maps)
  F6  84 units
  out 10 units
with the paper's squashing function f(a) = 1.7159 tanh(2a/3) after C1, S2, C3, S4, C5 and F6.

The paper's output layer is Euclidean RBF units (84 × 10 weights, no bias) fed to a special
loss; cnnx uses a linear layer with bias so that every model ends in logits trained by softmax
cross entropy (10 parameters more than the paper's layer-by-layer figures).
`lenet5_full` connects every S2 map to every C3 map.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnx.layers.conv import Conv
from cnnx.layers.dense import Dense
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters

# Table I: which S2 maps (rows 0-5) feed each C3 map (columns 0-15).
C3_CONNECTIONS = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (0, 4, 5),
    (0, 1, 5),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (0, 3, 4, 5),
    (0, 1, 4, 5),
    (0, 1, 2, 5),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def squash(x):
    """The paper's sigmoid: f(a) = A tanh(S a) with A = 1.7159 and S = 2/3 (Appendix A)."""
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: each map's 2×2 sums times a trainable coefficient, plus a trainable bias."""

    @nn.compact
    def __call__(self, x):
        """2×2 subsampling with a trainable coefficient and bias per map.

        Args:
          x: (B, H, W, C) maps (H, W even).

        Returns:
          (B, H / 2, W / 2, C).
        """
        c = x.shape[-1]
        coef = self.param("coefficient", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        s = nn.avg_pool(x, (2, 2), strides=(2, 2)) * 4.0
        return s * coef.astype(x.dtype) + bias.astype(x.dtype)


class SparseConv(nn.Module):
    """A VALID convolution whose input-output connections are given by a table.

    Only the connected kernels are parameters (shape (kh, kw, connections)); they are scattered
    into a dense kernel at call time, so the parameter count is the paper's.
    """

    connections: tuple[tuple[int, ...], ...]
    in_features: int
    kernel_size: int = 5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        """The VALID convolution over the table's connections.

        Args:
          x: (B, H, W, in_features) maps.

        Returns:
          (B, H - k + 1, W - k + 1, len(connections)).
        """
        pairs = [(i, o) for o, ins in enumerate(self.connections) for i in ins]
        in_idx = np.array([i for i, _ in pairs])
        out_idx = np.array([o for _, o in pairs])
        k = self.kernel_size
        fan_in = np.array([len(self.connections[o]) * k * k for o in out_idx], np.float32)

        # LeCun init per output map: uniform(±2.4 / fan_in) as in the paper's Appendix C.
        def init(key, shape, dtype):
            return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * (2.4 / fan_in)

        kernel = self.param("kernel", init, (k, k, len(pairs)), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (len(self.connections),), jnp.float32)
        dense = jnp.zeros((k, k, self.in_features, len(self.connections)), jnp.float32)
        dense = dense.at[:, :, in_idx, out_idx].set(kernel)
        y = jax.lax.conv_general_dilated(
            x, dense.astype(self.dtype), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + bias.astype(self.dtype)


class LeNet5(Classifier):
    """LeNet-5. Expects 32×32 inputs (the paper pads 28×28 MNIST digits to 32×32).

    Attributes:
      num_classes: outputs (10 digits); 0 returns the 84 F6 features.
      partial_c3: use Table I's partial C3 connections (True, the paper) or full ones.
      width_mult, depth_mult: compound-scaling hooks; width scales every layer's maps (the
        partial connection table then no longer applies, so it falls back to full C3). Depth
        has nothing to repeat in LeNet and is accepted only so every family takes it.
      dropout_rate: dropout before the output layer (none in the paper).
    """

    num_classes: int = 10
    partial_c3: bool = True

    @nn.compact
    def __call__(self, x, *, train: bool):
        if x.shape[1] < 32 or x.shape[2] < 32:
            raise ValueError(f"LeNet-5 needs inputs of at least 32×32, got {x.shape[1:3]}")
        x = x.astype(self.dtype)

        def w(c):
            return round_filters(c, self.width_mult, divisor=1)

        x = squash(Conv(w(6), (5, 5), padding="VALID", dtype=self.dtype, name="c1")(x))
        x = squash(Subsampling(name="s2")(x))
        if self.partial_c3 and self.width_mult == 1.0:
            x = SparseConv(C3_CONNECTIONS, in_features=6, dtype=self.dtype, name="c3")(x)
        else:
            x = Conv(w(16), (5, 5), padding="VALID", dtype=self.dtype, name="c3")(x)
        x = squash(x)
        x = squash(Subsampling(name="s4")(x))
        x = squash(Conv(w(120), (5, 5), padding="VALID", dtype=self.dtype, name="c5")(x))
        x = jnp.mean(x, axis=(1, 2)) if x.shape[1] > 1 else x.reshape(x.shape[0], -1)
        x = squash(Dense(w(84), dtype=self.dtype, name="f6")(x))
        if self.num_classes == 0:
            return x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return Dense(self.num_classes, dtype=self.dtype, name="output")(x)


register_family(
    "lenet",
    LeNet5,
    {
        "lenet5": dict(kwargs=dict(partial_c3=True), param_count=60_850),
        "lenet5_full": dict(kwargs=dict(partial_c3=False), param_count=61_750),
    },
    paper="LeCun et al. 1998, Gradient-Based Learning Applied to Document Recognition",
    year=1998,
    resolution=32,
    crop_pct=1.0,
    in_chans=1,
    num_classes=10,
    min_resolution=32,
    test_resolution=32,
    lacks=("drop_path_rate", "remat"),
)
