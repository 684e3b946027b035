#!/usr/bin/env bash
# Settings, the table of TPU generations, and helpers shared by the Cloud TPU scripts (sourced,
# not run).
#
# Every setting is an environment variable. Nothing that picks a machine has a default: a
# wrong guess would reach someone else's VM, or none.
#   TPU_NAME=                the TPU VM (one host, or every host of a slice); required
#   ZONE=                    its zone; default: gcloud's (gcloud config set compute/zone ZONE)
#   PROJECT=                 the Google Cloud project; default: gcloud's (core/project)
#   ACCELERATOR_TYPE=        create.sh: v4-8, v4-32, v5litepod-8, v5litepod-16, v5p-8, v6e-8,
#                            v6e-16...; a type of a generation in TPU_TABLE below
#   RUNTIME_VERSION=         create.sh: the TPU VM image; default: the generation's (TPU_TABLE)
#   CAPACITY=on-demand       create.sh: on-demand | spot | reserved | best-effort (SPOT=1 is
#                            CAPACITY=spot)
#   VALID_UNTIL=             create.sh: drop the request if not filled within it (6h, 2d)
#   QUEUED_RESOURCE=$TPU_NAME  the queued-resource request that holds the TPU VM
#   WAIT=1                   create.sh: wait until the slice is ACTIVE (0: return when queued)
#   POLL_S=30                create.sh: seconds between two looks at the request's state
#   ZONE_CHECK=1             0: accept a zone TPU_TABLE does not list for the generation
#   REMOTE_DIR=cnnx          where the code goes on each worker, relative to $HOME
#   LOG_DIR=logs/tpu/$TPU_NAME   local directory for the workers' logs
#   NUM_WORKERS=             hosts of the slice (default: asked from gcloud)
#   DRY_RUN=0                1: print every gcloud command instead of running it

set -euo pipefail

# One row per TPU generation: its name, the prefix of its accelerator types, the runtime
# version (TPU VM image) for JAX, how slice sizes count (cores: TensorCores, 8 per host of 4
# chips; chips: 1, 4 or 8 on one host, then 4 per host up to 256) and the zones it is in.
# Runtime versions: https://cloud.google.com/tpu/docs/runtimes ("PyTorch and JAX").
# Zones: https://cloud.google.com/tpu/docs/regions-zones (general zones; single-tenant and AI
# zones are left out), as the page stood in September 2025. It changes: ZONE_CHECK=0 accepts
# a zone not listed here.
TPU_TABLE="
v4   v4         tpu-ubuntu2204-base  cores  us-central2-b
v5e  v5litepod  v2-alpha-tpuv5-lite  chips  us-central1-a us-south1-a us-west1-c us-west4-a europe-west4-b asia-southeast1-b
v5p  v5p        v2-alpha-tpuv5       cores  us-central1-a us-east5-a europe-west4-b
v6e  v6e        v2-alpha-tpuv6e      chips  us-central1-b us-east1-d us-east5-a us-east5-b europe-west4-a asia-northeast1-b
"

# tpu_type TYPE: sets TPU_GENERATION, TPU_RUNTIME, TPU_ZONES and TPU_HOSTS (hosts of the
# slice) for an accelerator type such as v6e-16; returns 1 (and sets nothing) for a type
# that is not a generation of TPU_TABLE with a valid slice size.
tpu_type() {
  local type="$1" gen prefix runtime unit zones size
  size="${type##*-}"
  [[ "$type" == *-* && "$size" =~ ^[1-9][0-9]*$ ]] || return 1
  while read -r gen prefix runtime unit zones; do
    [[ -n "$gen" && "${type%-*}" == "$prefix" ]] || continue
    if [[ "$unit" == cores ]]; then
      ((size % 8 == 0)) || return 1
      TPU_HOSTS=$((size / 8))
    elif ((size == 1 || size == 4 || size == 8)); then
      TPU_HOSTS=1
    elif ((size % 16 == 0 && size <= 256)); then
      TPU_HOSTS=$((size / 4))
    else
      return 1
    fi
    # shellcheck disable=SC2034  # read by the scripts that source this file
    TPU_GENERATION="$gen" TPU_RUNTIME="$runtime" TPU_ZONES="$zones"
    return 0
  done <<<"$TPU_TABLE"
  return 1
}

# The generation whose runtime version is $1 (nothing for a version not in TPU_TABLE).
runtime_generation() {
  local gen prefix runtime rest
  while read -r gen prefix runtime rest; do
    if [[ -n "$gen" && "$runtime" == "$1" ]]; then
      echo "$gen"
    fi
  done <<<"$TPU_TABLE"
}

# gcloud's configured value of property $1 (compute/zone, core/project), or nothing.
gcloud_config() {
  if command -v gcloud >/dev/null; then
    gcloud config get-value "$1" 2>/dev/null || true
  fi
}

TPU_NAME="${TPU_NAME:-}"
ZONE="${ZONE:-$(gcloud_config compute/zone)}"
PROJECT="${PROJECT:-$(gcloud_config core/project)}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-}"
QUEUED_RESOURCE="${QUEUED_RESOURCE:-$TPU_NAME}"
REMOTE_DIR="${REMOTE_DIR:-cnnx}"
DRY_RUN="${DRY_RUN:-0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOG_DIR="${LOG_DIR:-$REPO_ROOT/logs/tpu/$TPU_NAME}"

# Every problem with the settings, reported together by check_settings_done.
problems=()

# Checks the settings every script needs: which TPU VM, where, in which project.
check_target_settings() {
  if [[ -z "$TPU_NAME" ]]; then
    problems+=("TPU_NAME is not set (the TPU VM; e.g. TPU_NAME=cnnx)")
  elif [[ ! "$TPU_NAME" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]]; then
    problems+=("TPU_NAME=$TPU_NAME: lower-case letters, digits and hyphens, starting with a letter")
  fi
  if [[ -z "$ZONE" ]]; then
    problems+=("ZONE is not set, nor gcloud's compute/zone (the TPU VM's zone; e.g. ZONE=us-east5-b)")
  elif [[ ! "$ZONE" =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]]; then
    problems+=("ZONE=$ZONE is not a zone name (e.g. us-central2-b, europe-west4-a)")
  fi
  if [[ -z "$PROJECT" ]]; then
    problems+=("PROJECT is not set, nor gcloud's core/project (the Google Cloud project)")
  fi
  if [[ "$QUEUED_RESOURCE" != "$TPU_NAME" && ! "$QUEUED_RESOURCE" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]]; then
    problems+=("QUEUED_RESOURCE=$QUEUED_RESOURCE: lower-case letters, digits and hyphens, starting with a letter")
  fi
  if [[ -n "${NUM_WORKERS:-}" && ! "$NUM_WORKERS" =~ ^[1-9][0-9]*$ ]]; then
    problems+=("NUM_WORKERS=$NUM_WORKERS: a positive integer, or unset to ask gcloud")
  fi
  if [[ "$DRY_RUN" != 1 ]] && ! command -v gcloud >/dev/null; then
    problems+=("gcloud is not installed (https://cloud.google.com/sdk/docs/install), or use DRY_RUN=1")
  fi
}

# Exits 2 listing every problem found (nothing was started), or sets TPU_FLAGS.
check_settings_done() {
  if ((${#problems[@]})); then
    printf 'error: %s: %d problem(s), nothing was started:\n' "$1" "${#problems[@]}" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    exit 2
  fi
  TPU_FLAGS=(--zone="$ZONE" --project="$PROJECT")
}

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

# gcloud compute tpus queued-resources SUBCOMMAND ARGS... with the zone and project flags.
queued_resources() {
  run gcloud compute tpus queued-resources "$@" "${TPU_FLAGS[@]}"
}

# The number of hosts (workers) of the TPU VM: $NUM_WORKERS, or its network endpoints (in a
# dry run: the hosts of $ACCELERATOR_TYPE, or 1).
num_workers() {
  if [[ -n "${NUM_WORKERS:-}" ]]; then
    echo "$NUM_WORKERS"
  elif [[ "$DRY_RUN" == 1 ]]; then
    tpu_vm describe "$TPU_NAME" --format='value(networkEndpoints[].ipAddress)' >&2
    if [[ -n "$ACCELERATOR_TYPE" ]] && tpu_type "$ACCELERATOR_TYPE"; then
      echo "$TPU_HOSTS"
    else
      echo 1
    fi
  else
    gcloud compute tpus tpu-vm describe "$TPU_NAME" "${TPU_FLAGS[@]}" \
      --format='value(networkEndpoints[].ipAddress)' | tr ';' '\n' | grep -c .
  fi
}
