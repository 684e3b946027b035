"""cnnx.train.feeding: batches placed ahead with only what the step reads; steps in flight."""

import jax
import jax.numpy as jnp
import numpy as np

from cnnx.parallel.mesh import batch_sharding, make_mesh
from cnnx.train import feeding


def _batches(n, taken):
    for i in range(n):
        taken.append(i)
        yield {
            "image": np.full((8, 2, 2, 1), i, np.float32),
            "label": np.full((8,), i, np.int32),
            "index": np.arange(8, dtype=np.int64) + 8 * i,
        }


def test_prefetch_places_ahead_in_order_and_only_the_step_keys():
    sharding = batch_sharding(make_mesh())
    taken = []
    placed = feeding.prefetch_to_device(_batches(5, taken), sharding, size=2)
    first = next(placed)
    assert taken == [0, 1, 2]  # two batches placed beyond the one handed over
    assert set(first) == set(feeding.STEP_KEYS) == {"image", "label"}  # 'index' stays home
    assert isinstance(first["image"], jax.Array) and first["image"].sharding == sharding
    rest = [int(b["label"][0]) for b in placed]
    assert int(first["label"][0]) == 0 and rest == [1, 2, 3, 4]
    everything = next(feeding.prefetch_to_device(_batches(1, []), sharding, keys=None))
    assert set(everything) == {"image", "label", "index"}


def test_in_flight_keeps_at_most_depth_steps_and_drains():
    in_flight = feeding.InFlight(depth=2)
    for i in range(5):
        in_flight.add(jnp.full((), i))
        assert len(in_flight._outputs) == min(i + 1, 2)
    in_flight.drain()
    assert not in_flight._outputs
