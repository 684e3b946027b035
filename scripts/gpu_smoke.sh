#!/usr/bin/env bash
# GPU smoke test on a CUDA machine: installs the CUDA build of the jax version in
# requirements.txt, checks that jax sees the GPUs, trains a few steps of several model
# families on them (synthetic data, each config's `smoke` variant at a larger batch) and
# prints the throughput of each from its step timings (train/step_ms, compilation excluded).
#
#   scripts/gpu_smoke.sh                          # every visible GPU (the batch is sharded)
#   CUDA_VISIBLE_DEVICES=0 scripts/gpu_smoke.sh   # one GPU
#   STEPS=50 BATCH=128 scripts/gpu_smoke.sh       # longer, bigger (BATCH: a multiple of the GPUs)
#   DRY_RUN=1 scripts/gpu_smoke.sh                # print the commands only
#   SKIP_INSTALL=1 CONFIGS="resnet.py:18,smoke" scripts/gpu_smoke.sh   # rerun one config
#   PLATFORM=cpu SKIP_INSTALL=1 scripts/gpu_smoke.sh  # the same flow on a CPU (checks the script)
#   PYTHON=~/miniconda3/envs/jax/bin/python scripts/gpu_smoke.sh  # your own environment
#
# Which Python runs it: $PYTHON (the requirements, cnnx and jax[cuda12] are installed into its
# environment unless SKIP_INSTALL=1); else make install's venv ($VENV, default .venv; created
# unless SKIP_INSTALL=1); else, with SKIP_INSTALL=1 and no venv, the python3 on the PATH.
# Needs an NVIDIA driver for CUDA 12 and Python >= 3.11. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STEPS="${STEPS:-30}"
BATCH="${BATCH:-64}"
WORKDIR="${WORKDIR:-${TMPDIR:-/tmp}/cnnx_gpu_smoke}"
DRY_RUN="${DRY_RUN:-0}"
PLATFORM="${PLATFORM:-gpu}"
# config:arg, one per family (LeNet, ResNet, EfficientNet, ConvNeXt, Inception, VGG).
read -r -a CONFIGS <<<"${CONFIGS:-default.py:smoke resnet.py:18,smoke efficientnet_b0.py:smoke \
convnext.py:tiny,smoke inception_v3.py:smoke vgg.py:11_lrn,smoke}"

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

install=1
if [[ "${SKIP_INSTALL:-0}" == 1 ]]; then
  install=0
fi
venv="${VENV:-.venv}"
if [[ -n "${PYTHON:-}" ]]; then
  python="$PYTHON"
elif ((install)) || [[ -x "$venv/bin/python" ]]; then
  python="$venv/bin/python"
else
  python=python3
fi

jax_version="$(sed -n 's/^jax==//p' requirements.txt)"
if ((install)); then
  if [[ -n "${PYTHON:-}" ]]; then
    run "$python" -m pip install -q -r requirements.txt
    run "$python" -m pip install -q --no-deps -e .
  elif [[ -n "${VENV:-}" ]]; then
    run make install VENV="$VENV"
  else
    run make install
  fi
  run "$python" -m pip install -q -U "jax[cuda12]==$jax_version"
fi
run "$python" -c '
import sys, jax
devices = jax.devices()
print(f"{sys.executable}: jax {jax.__version__}: {len(devices)} device(s): {devices}")
assert devices[0].platform == sys.argv[1], f"jax sees no {sys.argv[1]}: check the driver and CUDA_VISIBLE_DEVICES"
' "$PLATFORM"

for config in "${CONFIGS[@]}"; do
  name="${config//[:,.]/_}"
  run rm -rf "${WORKDIR:?}/$name"
  run "$python" train.py --config="configs/$config" --workdir="$WORKDIR/$name" \
    --config.train.num_steps="$STEPS" --config.train.batch_size="$BATCH" \
    --config.eval.batch_size="$BATCH" --config.train.log_every_steps=10
done

# Throughput of each run: the last log interval's mean step time (no compilation in it).
run "$python" - "$WORKDIR" "$BATCH" "${CONFIGS[@]}" <<'PY'
import json, sys

workdir, batch, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"{'config':<28} {'model':<18} {'img/s':>9} {'step ms':>9} {'data wait ms':>13} {'top-1':>7}")
for config in configs:
    name = config.replace(":", "_").replace(",", "_").replace(".", "_")
    with open(f"{workdir}/{name}/train_metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    with open(f"{workdir}/{name}/results.json") as f:
        results = json.load(f)
    ms = last["train/step_ms"]
    print(f"{config:<28} {results['model']:<18} {batch * 1000 / ms:>9.0f} {ms:>9.2f} "
          f"{last['train/data_wait_ms']:>13.2f} {results['eval/top1']:>6.1f}%")
PY
