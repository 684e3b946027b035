"""Rematerialisation (gradient checkpointing) of whole blocks: `maybe_remat(Block, remat)`.

With `remat` on, a block keeps only its input for the backward pass and recomputes everything
inside it (convolutions, norms, attention) when the gradient reaches it: activation memory of
a deep network drops from "every intermediate of every block" to "one tensor per block plus
one block's intermediates", for about one extra forward pass of compute (Chen et al. 2016,
"Training Deep Nets with Sublinear Memory Cost"; `jax.checkpoint`).

Blocks keep their usual signature `__call__(self, x, *, train: bool)` and their names, so the
parameter tree, the outputs and the gradients are exactly those without remat (tested); only
the program's memory/compute trade-off changes. `train` must be a Python bool inside a block
(it picks BatchNorm's statistics and switches dropout), while `jax.checkpoint` traces keyword
arguments; `maybe_remat` therefore passes it positionally, as a static argument.
"""

import functools

import flax.linen as nn
import jax

# Names accepted by `remat_policy` (a `jax.checkpoint_policies` member each); None saves
# nothing inside a block.
POLICIES = (
    "nothing_saveable",
    "everything_saveable",
    "dots_saveable",
    "dots_with_no_batch_dims_saveable",
    "checkpoint_dots",
    "checkpoint_dots_with_no_batch_dims",
)


def remat_policy(name: str | None):
    """The `jax.checkpoint` policy called `name` (None: recompute everything)."""
    if name is None:
        return None
    if name not in POLICIES:
        raise ValueError(f"Unknown remat policy {name!r}; use one of {', '.join(POLICIES)}.")
    return getattr(jax.checkpoint_policies, name)


@functools.cache
def _remat_class(cls: type[nn.Module], policy_name: str | None) -> type[nn.Module]:
    class Positional(cls):
        # `train` becomes positional argument 2 (self is 0) so that it can be static.
        def __call__(self, x, train):
            return super().__call__(x, train=train)

    rematted = nn.remat(Positional, static_argnums=(2,), policy=remat_policy(policy_name))

    class Remat(rematted):
        def __call__(self, x, *, train: bool):
            return super().__call__(x, train)

    Remat.__name__ = Remat.__qualname__ = cls.__name__
    Remat.__doc__ = cls.__doc__
    return Remat


def maybe_remat(cls: type[nn.Module], remat: bool | str = False) -> type[nn.Module]:
    """`cls` itself, or a rematerialised drop-in replacement of it.

    Args:
      cls: a block module called as `block(x, train=...)`; `x` may be any pytree of arrays.
      remat: False (no remat), True (recompute the whole block in the backward pass), or the
        name of a `jax.checkpoint_policies` policy (see `POLICIES`), e.g. 'dots_saveable'
        to keep matrix products and recompute only the cheap element-wise work.

    Returns:
      A module class with the same fields, call signature, names and parameters as `cls`.
    """
    if not remat:
        return cls
    return _remat_class(cls, None if remat is True else str(remat))
