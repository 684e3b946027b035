"""TensorFlow's random streams in NumPy: the draws of its stateless random ops and the order
of `tf.data.Dataset.shuffle`, bit for bit, without TensorFlow.

The in-memory pipelines (`cnnx.data.in_memory`) use them so that every example gets exactly
the order and augmentation the tf.data pipeline gave it (runs resume exactly whichever ran).
Each function names the TensorFlow source it follows:

  philox        Philox4x32-10 (Salmon et al. 2011), `xla/tsl/lib/random/philox_random.h`.
  key_counter   the scrambling of a stateless seed into a Philox key and counter,
                `GenerateKey` in `tensorflow/core/kernels/stateless_random_ops.cc` (the
                `auto_select` algorithm on CPU).
  fold_in       `tf.random.experimental.stateless_fold_in` (`python/ops/stateless_random_ops.py`).
  uniform_float, uniform_int
                `tf.random.stateless_uniform` for float32 and bounded int32
                (`UniformDistribution` in `xla/tsl/lib/random/random_distributions.h`).
  shuffle_order `Dataset.range(n).shuffle(buffer, seed)`: the buffer algorithm of
                `tensorflow/core/kernels/data/shuffle_dataset_op.cc`, its Philox stream
                seeded from (graph seed, op seed) as `python/framework/random_seed.py` derives
                them (no global seed set: the graph seed is `DEFAULT_GRAPH_SEED`).

Seeds are arrays of shape (..., 2) (int64 or int32, as TensorFlow takes them); everything is
vectorised over the leading axes, so a batch's draws cost a few NumPy operations.
"""

import numpy as np

_MASK = np.uint64(0xFFFFFFFF)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)  # kPhiloxM4x32A, kPhiloxM4x32B
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)  # kPhiloxW32A, kPhiloxW32B
_ROUNDS = 10
# GenerateKey's fixed key, under which a seed is scrambled into the key and counter.
_SCRAMBLE_KEY = (0x3EC8F720, 0x02461E29)
# random_seed.DEFAULT_GRAPH_SEED: the first seed of every seeded op when no global seed is set.
DEFAULT_GRAPH_SEED = 87654321


def philox(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """One Philox4x32-10 block: `PhiloxRandom(counter, key)()`.

    Args:
      counter: (..., 4) uint32, least significant word first.
      key: (..., 2) uint32.

    Returns:
      (..., 4) uint32, the block's four outputs.
    """
    c = [np.asarray(counter[..., i], np.uint64) for i in range(4)]
    k0 = np.asarray(key[..., 0], np.uint64)
    k1 = np.asarray(key[..., 1], np.uint64)
    for r in range(_ROUNDS):
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK  # RaiseKey
        p0, p1 = _M0 * c[0], _M1 * c[2]  # exact: 32 x 32 bits fit in 64
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & _MASK, (p0 >> 32) ^ c[3] ^ k1, p0 & _MASK]
    return np.stack(c, -1).astype(np.uint32)


def _words(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low and high 32-bit words of integers as TensorFlow widens them to uint64 (int32 seeds
    are sign-extended, as `static_cast<uint64>` of an int32 does)."""
    x = np.asarray(x).astype(np.int64).view(np.uint64)
    return x & _MASK, x >> np.uint64(32)


def key_counter(seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Philox key (..., 2) and counter (..., 4), uint32, of stateless seeds (..., 2)."""
    seed = np.asarray(seed)
    lo0, hi0 = _words(seed[..., 0])
    lo1, hi1 = _words(seed[..., 1])
    key = np.broadcast_to(np.array(_SCRAMBLE_KEY, np.uint32), (*seed.shape[:-1], 2))
    mix = philox(np.stack([lo0, hi0, lo1, hi1], -1).astype(np.uint32), key)
    zero = np.zeros_like(mix[..., 0])
    return mix[..., :2], np.stack([zero, zero, mix[..., 2], mix[..., 3]], -1)


def _skip(counter: np.ndarray, n: np.ndarray) -> np.ndarray:
    """`PhiloxRandom::Skip(n)`: the 128-bit counter plus `n` (< 2**32)."""
    c = counter.astype(np.uint64)
    words = [c[..., i] for i in range(4)]
    carry = np.asarray(n, np.uint64)
    for i in range(4):
        total = words[i] + carry
        words[i], carry = total & _MASK, total >> np.uint64(32)
    return np.stack(words, -1).astype(np.uint32)


def bits(seed: np.ndarray, count: int) -> np.ndarray:
    """The first `count` uint32 outputs of a stateless op seeded with `seed` (..., 2): Philox
    blocks at counters c, c + 1, ... (the order the kernels fill their output in).

    Returns:
      (..., count) uint32.
    """
    key, counter = key_counter(seed)
    blocks = -(-count // 4)
    steps = np.arange(blocks, dtype=np.uint64)
    counters = _skip(counter[..., None, :], steps[:, None].reshape(-1))
    out = philox(counters, key[..., None, :])
    return out.reshape(*out.shape[:-2], blocks * 4)[..., :count]


def uniform_float(seed: np.ndarray, count: int = 1) -> np.ndarray:
    """`tf.random.stateless_uniform([count], seed)` (float32 in [0, 1)) per seed (..., 2):
    23 random mantissa bits under exponent 0, minus 1 (`Uint32ToFloat`).

    Returns:
      (..., count) float32.
    """
    mantissa = bits(seed, count) & np.uint32(0x7FFFFF)
    return (mantissa | np.uint32(127 << 23)).view(np.float32) - np.float32(1.0)


def uniform_int(seed: np.ndarray, count: int, maxval: int) -> np.ndarray:
    """`tf.random.stateless_uniform([count], seed, maxval=maxval, dtype=tf.int32)` (minval 0):
    each output word modulo `maxval`.

    Returns:
      (..., count) int32.
    """
    return (bits(seed, count) % np.uint32(maxval)).astype(np.int32)


def fold_in(seed: np.ndarray, data: int) -> np.ndarray:
    """`tf.random.experimental.stateless_fold_in(seed, data)` with a Python int `data` (which
    TensorFlow converts to int32): [the seed's first full-range int32 draw, data].

    Returns:
      (..., 2) int32 seeds.
    """
    first = bits(seed, 1)[..., 0].view(np.int32)
    return np.stack([first, np.full_like(first, data)], -1)


def shuffle_order(n: int, buffer: int, seed: int) -> np.ndarray:
    """The order of `tf.data.Dataset.range(n).shuffle(buffer, seed=seed)` (any
    `reshuffle_each_iteration`: the first iteration), with no global seed set.

    The shuffle fills a buffer of `buffer` elements, then emits `buffer[r % size]` for each
    random word r, moving the buffer's oldest element into the gap and refilling from the
    input (shuffle_dataset_op.cc). Its words come from one Philox stream with key
    DEFAULT_GRAPH_SEED and counter words 2-3 = `seed`, consumed one word at a time
    (`SingleSampleAdapter`).

    Returns:
      (n,) int64, the permutation of range(n).
    """
    if buffer < 1:
        raise ValueError(f"shuffle buffer must be positive, got {buffer}")
    key = np.array([DEFAULT_GRAPH_SEED & 0xFFFFFFFF, DEFAULT_GRAPH_SEED >> 32], np.uint32)
    lo, hi = _words(np.int64(seed % (2**31 - 1)))  # random_seed._truncate_seed
    counter = np.array([0, 0, lo, hi], np.uint32)
    blocks = -(-n // 4)
    counters = _skip(counter[None], np.arange(blocks, dtype=np.uint64))
    words = philox(counters, np.broadcast_to(key, (blocks, 2))).reshape(-1)[:n].tolist()
    # The buffer as a ring: slot (start + j) % buffer holds the j-th oldest element.
    ring = [0] * buffer
    start = size = filled = 0
    order = []
    for word in words:
        while size < buffer and filled < n:
            ring[(start + size) % buffer] = filled
            filled += 1
            size += 1
        pick = (start + word % size) % buffer
        order.append(ring[pick])
        ring[pick] = ring[start % buffer]
        start, size = (start + 1) % buffer, size - 1
    return np.asarray(order, np.int64)
