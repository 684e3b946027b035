"""A 32-bit fingerprint of every array of a pytree, computed on device where the arrays live.

`cnnx.train.checkpoint` records them with every step and checks them on restore: any changed
or moved word of an array changes its fingerprint, whatever the array's sharding or device,
and computing them costs one pass over the state, no re-reading of files (local or gs://).
"""

import jax
import jax.numpy as jnp
from jax import lax

# Versions the format: a checkpoint records it beside its fingerprints, and a step recorded
# under another algorithm cannot be checked (the restore calls it damaged).
ALGORITHM = "fmix32-sum-v1"


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's finaliser: a bijection of uint32 that spreads every input bit."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(x) -> jax.Array:
    """The bits of an array as uint32 words (one per element; two for 8-byte types)."""
    x = jnp.asarray(x)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if x.dtype.itemsize < 4:
        return lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}")).astype(
            jnp.uint32
        )
    return lax.bitcast_convert_type(x, jnp.uint32)


def _fingerprint(x) -> jax.Array:
    """sum_i fmix32(word_i ^ fmix32(i)) mod 2**32: any one changed word changes the sum (the
    map is a bijection per position), and so do moved words. The linear index is built from
    iotas in the array's own shape, so a sharded array is hashed in place (no reshape)."""
    w = _words(x)
    index, stride = jnp.zeros(w.shape, jnp.uint32), 1
    for axis in reversed(range(w.ndim)):
        index = index + lax.broadcasted_iota(jnp.uint32, w.shape, axis) * jnp.uint32(stride)
        stride = stride * w.shape[axis] % 2**32
    return jnp.sum(_fmix32(w ^ _fmix32(index)), dtype=jnp.uint32)


_fingerprint_all = jax.jit(lambda leaves: [_fingerprint(x) for x in leaves])


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey / FlattenedIndexKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def named_leaves(tree) -> dict:
    """`{'params.conv1.kernel': leaf, ...}`: leaves named as orbax names them on disk."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {".".join(_key_name(k) for k in path): leaf for path, leaf in flat}


def fingerprints(tree) -> dict[str, int]:
    """A 32-bit fingerprint of every array of `tree`, computed where the arrays live.

    Args:
      tree: a pytree of `jax.Array`s (sharded or not, over one or several processes) or numpy
        arrays.

    Returns:
      `{leaf name: fingerprint}`, identical for equal bits whatever the sharding or device.
    """
    leaves = named_leaves(tree)
    values = jax.device_get(_fingerprint_all(list(leaves.values())))
    return {name: int(v) for name, v in zip(leaves, values)}
