"""cnnx.train.fingerprint: any changed or moved word changes an array's fingerprint, its
sharding and device do not (how checkpoints use them: test_checkpoint_integrity.py)."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from cnnx.train.fingerprint import fingerprints


def test_fingerprints_see_any_changed_word_whatever_the_sharding():
    x = jnp.arange(64 * 16, dtype=jnp.float32).reshape(64, 16) / 7
    base = fingerprints({"x": x})["x"]
    # The top bit of an element at an even position: a plain position-weighted sum of the
    # words misses it (2**31 * 2k = 0 mod 2**32); swapped elements keep any plain sum.
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    flipped = jax.lax.bitcast_convert_type(
        bits.at[3, 2].set(bits[3, 2] ^ jnp.uint32(1 << 31)), jnp.float32
    )
    swapped = x.at[0, 0].set(x[0, 1]).at[0, 1].set(x[0, 0])
    assert fingerprints({"x": flipped})["x"] != base
    assert fingerprints({"x": swapped})["x"] != base
    mesh = jax.make_mesh((8,), ("data",))
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    assert fingerprints({"x": sharded})["x"] == base
    assert fingerprints({"x": np.asarray(x)})["x"] == base  # host arrays (load_variables)
    odd = {"b": jnp.array([True, False]), "h": x.astype(jnp.bfloat16), "i": jnp.int32(3)}
    assert set(fingerprints(odd)) == {"b", "h", "i"}
