#!/usr/bin/env bash
# Settings and helpers shared by the Cloud TPU scripts (sourced, not run).
#
# Every setting is an environment variable with a default:
#   TPU_NAME=cnnx            the TPU VM (single host or pod slice)
#   ZONE=us-central2-b       its zone
#   ACCELERATOR_TYPE=v4-8    e.g. v4-32 (a 4-host pod slice), v5litepod-16, v6e-8
#   RUNTIME_VERSION=tpu-ubuntu2204-base   the TPU VM image (v5e: v2-alpha-tpuv5-lite,
#                            v6e: v2-alpha-tpuv6e)
#   PROJECT=                 the Google Cloud project (default: gcloud's configured one)
#   SPOT=0                   1: create a Spot (preemptible) VM
#   REMOTE_DIR=cnnx          where the code goes on each worker, relative to $HOME
#   LOG_DIR=logs/tpu/$TPU_NAME   local directory for the workers' logs
#   NUM_WORKERS=             hosts of the slice (default: asked from gcloud)
#   DRY_RUN=0                1: print every gcloud command instead of running it

set -euo pipefail

TPU_NAME="${TPU_NAME:-cnnx}"
ZONE="${ZONE:-us-central2-b}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
PROJECT="${PROJECT:-}"
SPOT="${SPOT:-0}"
REMOTE_DIR="${REMOTE_DIR:-cnnx}"
DRY_RUN="${DRY_RUN:-0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOG_DIR="${LOG_DIR:-$REPO_ROOT/logs/tpu/$TPU_NAME}"

TPU_FLAGS=(--zone="$ZONE")
if [[ -n "$PROJECT" ]]; then
  TPU_FLAGS+=(--project="$PROJECT")
fi

# Prints its arguments as one shell command that can be pasted back into a shell.
quote_command() {
  local out="" arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+=" $arg"
    else
      out+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  printf '%s\n' "${out# }"
}

# Runs a command, or prints it (prefixed with '+ ') when DRY_RUN=1.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ %s\n' "$(quote_command "$@")"
  else
    "$@"
  fi
}

# gcloud compute tpus tpu-vm SUBCOMMAND ARGS... with the zone and project flags.
tpu_vm() {
  run gcloud compute tpus tpu-vm "$@" "${TPU_FLAGS[@]}"
}

# The number of hosts (workers) of the TPU VM: $NUM_WORKERS, or its network endpoints.
num_workers() {
  if [[ -n "${NUM_WORKERS:-}" ]]; then
    echo "$NUM_WORKERS"
  elif [[ "$DRY_RUN" == 1 ]]; then
    tpu_vm describe "$TPU_NAME" --format='value(networkEndpoints[].ipAddress)' >&2
    echo 1
  else
    gcloud compute tpus tpu-vm describe "$TPU_NAME" "${TPU_FLAGS[@]}" \
      --format='value(networkEndpoints[].ipAddress)' | tr ';' '\n' | grep -c .
  fi
}
