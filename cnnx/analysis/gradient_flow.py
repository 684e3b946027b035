"""Per-layer gradient norms at initialisation, for plain vs residual networks (He et al. 2015,
§4.1-4.2: deeper plain networks train worse, residual ones do not).

What it shows for the BatchNorm CIFAR networks (train-mode BN, He init): the gradients of the
plain networks do not vanish towards the input, they *explode*, geometrically in depth
(plain110_cifar at 16 px: first-layer norm ~1.9e7 vs ~1 at the last conv; resnet110_cifar:
~41 vs ~1.2). He et al. already note that with BN "the backward propagated gradients exhibit
healthy norms" and the difficulty "is unlikely to be caused by vanishing gradients"; the
explosion of deep plain BN networks is analysed by Philipp et al. 2018 ("The exploding
gradient problem demystified") and Yang et al. 2019 ("A mean field theory of batch
normalization"). Identity shortcuts keep the norms within a small factor across depth.

`layer_gradient_norms` runs one batch (random images and labels unless given) through a
registered model in train mode, takes the gradient of the softmax cross-entropy and returns
the L2 norm of every layer's weight gradient (convolution / dense kernels), ordered from input
to output; at initialisation, or at given (e.g. trained) variables.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnx import models


def _forward_order(layer: str):
    """Sort key: stem first, then stages/blocks/convs by number, the classifier last."""
    if layer.startswith("stem"):
        group = 0
    elif layer.startswith("head"):
        group = 2
    else:
        group = 1
    numbers = tuple(int(n) for n in re.findall(r"\d+", layer))
    # 'downsample' (the shortcut) sorts after the convolutions of its block.
    return (group, numbers, "downsample" in layer)


def layer_gradient_norms(
    name: str,
    *,
    resolution: int = 32,
    batch: int = 32,
    seed: int = 0,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    variables: dict | None = None,
    **overrides,
) -> list[tuple[str, float]]:
    """Gradient norm of each layer's kernel for one batch, at initialisation or at `variables`.

    Args:
      name: registered model name (e.g. `plain56_cifar`).
      resolution: image size of the random batch.
      batch: batch size of the random batch.
      seed: seeds the parameters and the random batch.
      images: optional NHWC batch to use instead of random images.
      labels: optional integer labels (required with `images`).
      variables: {'params', 'batch_stats'} to take the gradient at (a trained checkpoint's,
        `cnnx.train.checkpoint.load_variables`) instead of a fresh initialisation; they must
        fit the model built with `overrides`.
      **overrides: passed to `cnnx.models.create`.

    Returns:
      [(layer path, ||dL/dW||_2)], ordered from input to output.
    """
    spec = models.get_spec(name)
    model = models.create(name, **overrides)
    num_classes = overrides.get("num_classes", spec.kwargs.get("num_classes", spec.num_classes))
    k_init, k_x, k_y = jax.random.split(jax.random.PRNGKey(seed), 3)
    if images is None:
        images = jax.random.normal(k_x, (batch, resolution, resolution, spec.in_chans))
        labels = jax.random.randint(k_y, (batch,), 0, num_classes)
    elif labels is None:
        raise ValueError("layer_gradient_norms: pass `labels` together with `images`.")
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    if variables is None:
        variables = model.init(k_init, images, train=False)

    @jax.jit
    def grads_fn(params):
        def loss_fn(p):
            logits, _ = model.apply(
                {**variables, "params": p},
                images,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": k_init},
            )
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))

        return jax.grad(loss_fn)(params)

    grads = traverse_util.flatten_dict(grads_fn(variables["params"]), sep="/")
    norms = {
        path.rsplit("/", 1)[0]: float(jnp.linalg.norm(g.ravel()))
        for path, g in grads.items()
        if path.endswith("kernel")
    }
    return [(layer, norms[layer]) for layer in sorted(norms, key=_forward_order)]
