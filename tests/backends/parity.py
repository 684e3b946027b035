"""Shared measure of the CPU-route parity tests."""

import numpy as np


def rel_err(got, ref) -> float:
    """max |got - ref| over max |ref| (float64; a zero reference counts as 1e-30)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))
