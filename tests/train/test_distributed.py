"""Which jax.distributed.initialize call each launch environment gets (the call is recorded,
not made; test_multiprocess.py runs a real two-process job)."""

import jax
import pytest

from cnnx.errors import ConfigError
from cnnx.train import distributed

SRUN = {
    "SLURM_NTASKS": "4",
    "SLURM_STEP_NODELIST": "n[1-4]",
    "SLURM_PROCID": "1",
    "SLURM_JOB_ID": "7",
    "SLURM_LOCALID": "0",
}
CASES = {
    # name: (environment, flags, expected initialize kwargs, or None for no call)
    "one_process": ({}, {}, None),
    "slurm_srun": (SRUN, {}, {}),
    "slurm_batch_script_is_one_process": ({"SLURM_NTASKS": "4"}, {}, None),
    "open_mpi_4": ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_MCA_orte_hnp_uri": "1.0;tcp://h:1"}, {}, {}),
    "open_mpi_5": (
        {
            "OMPI_COMM_WORLD_SIZE": "2",
            "OMPI_COMM_WORLD_RANK": "1",
            "JAX_COORDINATOR_ADDRESS": "h0:1234",
        },
        {},
        {"coordinator_address": "h0:1234", "num_processes": 2, "process_id": 1},
    ),
    "tpu_pod": ({"TPU_WORKER_HOSTNAMES": "w0,w1"}, {}, {}),
    "single_tpu_host": ({"TPU_WORKER_HOSTNAMES": "w0"}, {}, None),
    "explicit_flags": (
        {},
        {"coordinator_address": "h0:1", "num_processes": 2, "process_id": 0},
        {"coordinator_address": "h0:1", "num_processes": 2, "process_id": 0},
    ),
    "env_variables": (
        {"JAX_COORDINATOR_ADDRESS": "h0:9", "JAX_NUM_PROCESSES": "3", "JAX_PROCESS_ID": "2"},
        {},
        {"coordinator_address": "h0:9", "num_processes": 3, "process_id": 2},
    ),
}
ENV_VARS = {k for env, _, _ in CASES.values() for k in env} | {"OMPI_COMM_WORLD_RANK"}


@pytest.fixture
def calls(monkeypatch):
    recorded = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: recorded.append(kw))
    monkeypatch.setattr(distributed, "_use_cpu_collectives", lambda _: None)
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return recorded


@pytest.mark.parametrize("case", list(CASES))
def test_launch_environments(case, calls, monkeypatch):
    env, flags, expected = CASES[case]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert distributed.maybe_initialize(**flags) == (expected is not None)
    assert calls == ([] if expected is None else [expected])


@pytest.mark.parametrize(
    "env,flags",
    [
        ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}, {}),  # Open MPI 5, no address
        ({}, {"coordinator_address": "h0:1"}),  # flags without the count and index
    ],
    ids=["open_mpi_5_without_address", "incomplete_flags"],
)
def test_incomplete_setups_are_clear_errors(env, flags, calls, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match="coordinator_address"):
        distributed.maybe_initialize(**flags)
    assert calls == []


def test_absl_and_argparse_flags_reach_initialize(calls):
    """Every entry point's flags (one definition, two front ends) reach jax.distributed."""
    import argparse

    from absl import flags

    given = ["--coordinator_address=h0:5", "--num_processes=2", "--process_id=1"]
    expected = {"coordinator_address": "h0:5", "num_processes": 2, "process_id": 1}
    flag_values = flags.FlagValues()
    distributed.define_flags(flag_values)
    flag_values(["prog", *given])
    assert distributed.initialize_from_flags(flag_values)
    parser = argparse.ArgumentParser()
    distributed.add_arguments(parser)
    args = parser.parse_args(given)
    assert distributed.initialize_from_args(args)
    assert distributed.as_arguments(args) == given
    assert calls == [expected, expected]
    unset = flags.FlagValues()
    distributed.define_flags(unset)
    unset(["prog"])
    assert not distributed.initialize_from_flags(unset)  # one process: nothing to set up
