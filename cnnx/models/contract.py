"""The contract every model family shares, written once: seven options and `__call__`.

Every registered model is a `Classifier`: it takes the seven options below (the config's
`model` section sets them, the sweeps scale `width_mult` / `depth_mult`, the trainer sets the
rest) and is called as `model(x, train=...)`. A family that does not implement an optional
one (`OPTIONAL`: stochastic depth, per-block remat) declares it on its specs
(`register_family(..., lacks=...)`); `cnnx.models.create` then refuses any value but the
neutral default for it, naming the families that have it.

A family redeclares a field only to change its default (LeNet-5's `num_classes = 10`,
AlexNet's `dropout_rate = 0.5`); its own fields follow the contract's. Fields are data only:
parameter trees, module names and checkpoints do not depend on where a field is declared.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# Options a family may lack (`ModelSpec.lacks`) -> what they do; lacking one, a family accepts
# only its neutral value, the `Classifier` default.
OPTIONAL = {"drop_path_rate": "stochastic depth", "remat": "per-block rematerialisation"}


class Classifier(nn.Module):
    """Base of every registered model: the options all families take.

    Attributes:
      num_classes: classifier outputs; 0 returns the features the classifier would read
        (pooled features, or the last hidden layer's where the family says so).
      width_mult: scales the channels of the stem, every stage and the head
        (`scaling.round_filters`).
      depth_mult: scales every stage's repeat count (`scaling.round_repeats`).
      dropout_rate: dropout before the classifier (the family may say where else).
      drop_path_rate: stochastic depth of the last block, linear in the block index.
      remat: recompute each block in the backward pass (True, or a policy name; see
        `cnnx.layers.remat`); parameters and results are unchanged.
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 1000
    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    remat: bool | str = False
    dtype: Any = jnp.float32

    def __call__(self, x, *, train: bool):
        """Classifies a batch of images.

        Args:
          x: (B, H, W, C) float images (pixels / 255) normalised with the config's
            `data.mean` / `data.std` (converted weights expect the registry spec's `mean` /
            `std`); H and W at least the spec's `min_resolution`.
          train: training mode: BatchNorm (where the family has it) normalises with batch
            statistics and updates `batch_stats` (pass `mutable=['batch_stats']`; False uses
            the running averages); dropout and stochastic depth on (need a 'dropout' rng);
            auxiliary classifiers run (GoogLeNet, Inception v3, with `aux_logits`).

        Returns:
          (B, num_classes) logits; with `num_classes=0`, the (B, F) features. In train mode
          with auxiliary classifiers: `(logits, aux_logits)`, a tuple of (B, num_classes).
        """
        raise NotImplementedError(f"{type(self).__name__} must define __call__")
