#!/usr/bin/env bash
# Runs on each TPU VM worker (launch.sh starts it): a Python >= 3.11 venv with cnnx's
# requirements (make install) and the TPU build of the jax version in requirements.txt.
# TPU VM images ship Python 3.10; the deadsnakes PPA provides a newer one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

python="${PYTHON:-python3.11}"
if ! command -v "$python" >/dev/null; then
  sudo apt-get update -qq
  sudo apt-get install -y -qq software-properties-common
  sudo add-apt-repository -y ppa:deadsnakes/ppa
  sudo apt-get install -y -qq "$python" "$python-venv"
fi
jax_version="$(sed -n 's/^jax==//p' requirements.txt)"
make install PYTHON="$python"
.venv/bin/pip install -q -U "jax[tpu]==$jax_version"
.venv/bin/python -c 'import jax; print("worker", jax.process_index(), jax.local_devices())'
