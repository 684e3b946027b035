"""Runs a command as one process or as several jax.distributed processes on localhost.

Each process gets its own fake CPU devices (`--xla_force_host_platform_device_count`) and the
gloo CPU collectives that `cnnx.train.distributed.maybe_initialize` turns on, so a
multi-host job runs on one machine. Used by the multi-process tests of train.py, eval.py and
the scripts: the same command under one process and under two must give the same numbers.

    outputs = run_processes(["eval.py", "--workdir=..."], num_processes=2, devices=4)
"""

import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def cpu_env(devices: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of one child: `devices` fake CPU devices, this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(
        PYTHONPATH=REPO,
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
        "--xla_backend_optimization_level=0",
        **(extra or {}),
    )
    return env


def spawn(args: list[str], devices: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts `python ARGS` in the repository root with `devices` fake CPU devices."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=cpu_env(devices, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def distributed_flags(port: int, num_processes: int, process_id: int) -> list[str]:
    """train.py's multi-process flags (`cnnx.train.distributed.define_flags`)."""
    return [
        f"--coordinator_address=localhost:{port}",
        f"--num_processes={num_processes}",
        f"--process_id={process_id}",
    ]


def start(args: list[str], num_processes: int, devices: int, env=None) -> list[subprocess.Popen]:
    """Starts `python ARGS` once (num_processes=1: no flags) or as a jax.distributed job."""
    if num_processes == 1:
        return [spawn(args, devices, env)]
    port = free_port()
    return [
        spawn([*args, *distributed_flags(port, num_processes, i)], devices, env)
        for i in range(num_processes)
    ]


def wait(procs: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    """Waits for every process; fails with the output of the first that did not exit 0."""
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outputs.append(out)
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs
