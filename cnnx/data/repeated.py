"""Repeated augmentation (`data.repeated_augmentation` = k): each image k times per batch.

Hoffer et al. 2020 and Berman et al. 2019; DeiT's `RASampler` and torchvision's (`--ra-sampler
--ra-reps`), timm's `--aug-repeats`. As they do, an epoch keeps its length: its shuffled order
is cut to its first ⌈n/k⌉ images, each repeated k times in a row, and the stream cut back to
n; so an epoch sees about n/k distinct images, each k times. Each copy is augmented
differently: copy j of example i gets the per-example seed of index i + j·N (N: the split's
size; copy 0 keeps i's own seed, so k = 1 changes nothing).

DeiT's sampler then deals the stream round-robin over replicas, so the copies of an image land
on different devices (each replica's batch norm and gradient see different images). Here each
global batch is laid out as k slices, slice j holding copy j of the batch's B/k images in
the same order (`spread`): the devices' contiguous blocks of B/D rows then hold different
copies whenever k <= D. The order stays a pure function of (seed, epoch), so resume is exact.
Pure NumPy: the in-memory and tf.data paths share these rules.
"""

import math

import numpy as np


def stream(order: np.ndarray, repeats: int, num_split: int) -> np.ndarray:
    """The epoch's seed indices: `order`'s first ⌈n/k⌉ entries each k times, copy j as
    index + j·num_split, cut to n = len(order). `order` itself when k == 1.

    Args:
      order: (n,) example indices of the epoch, shuffled.
      repeats: k.
      num_split: N, the split's example count (the seed indices' period).

    Returns:
      (n,) int64 seed indices; the example of each is `% num_split`.
    """
    if repeats == 1:
        return order
    n = len(order)
    head = np.asarray(order[: math.ceil(n / repeats)], np.int64)
    copies = np.repeat(head, repeats) + num_split * np.tile(
        np.arange(repeats, dtype=np.int64), len(head)
    )
    return copies[:n]


def spread(repeats: int, batch: int, start: int = 0) -> np.ndarray:
    """The permutation laying out one batch of the stream (positions start..start+B-1): the
    rows hold first every position that is a copy 0, then the copies 1, ... (stable), so
    copy j of the batch's q-th image sits at row j·(B/k) + q when k divides B. With B not a
    multiple of k a group of copies may straddle two batches, as in DeiT's sampler.

    Returns:
      (B,) int indices into the batch's stream positions.
    """
    return np.argsort((start + np.arange(batch)) % repeats, kind="stable")
