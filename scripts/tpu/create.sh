#!/usr/bin/env bash
# Requests the Cloud TPU VM $TPU_NAME (one host, or every host of a slice) as a queued resource
# (gcloud compute tpus queued-resources create), the way Cloud TPU hands out v5e, v5p, v6e and
# Spot capacity, then waits until it is ACTIVE (WAIT=0: return once the request is queued).
#
#   TPU_NAME=cnnx ZONE=us-east5-b ACCELERATOR_TYPE=v6e-16 CAPACITY=spot scripts/tpu/create.sh
#   DRY_RUN=1 ... scripts/tpu/create.sh        # print the gcloud commands only
#
# CAPACITY: on-demand (the default), spot (cheaper; preempted at any time: use a gs:// workdir),
# reserved (your project's reservation) or best-effort (gcloud alpha). RUNTIME_VERSION follows
# the accelerator's generation (TPU_TABLE in common.sh). Every setting is checked before the
# first gcloud call, and every problem is reported at once. Settings: see common.sh.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

capacity="${CAPACITY:-}"
case "${SPOT:-0}" in
  0) ;;
  1)
    if [[ -z "$capacity" ]]; then
      capacity=spot
    elif [[ "$capacity" != spot ]]; then
      problems+=("SPOT=1 and CAPACITY=$capacity disagree (SPOT=1 is CAPACITY=spot; set one)")
    fi
    ;;
  *) problems+=("SPOT=$SPOT: 1 (a Spot VM, as CAPACITY=spot) or 0") ;;
esac
capacity="${capacity:-on-demand}"
wait_active="${WAIT:-1}"
poll_s="${POLL_S:-30}"

check_target_settings
runtime="${RUNTIME_VERSION:-}"
if [[ -z "$ACCELERATOR_TYPE" ]]; then
  problems+=("ACCELERATOR_TYPE is not set (e.g. v4-8, v5litepod-16, v5p-8, v6e-8)")
elif ! tpu_type "$ACCELERATOR_TYPE"; then
  problems+=("ACCELERATOR_TYPE=$ACCELERATOR_TYPE is not a TPU type known here: v4-N and v5p-N (N TensorCores, a multiple of 8), v5litepod-N and v6e-N (N chips: 1, 4, 8, 16, 32, 64, 128 or 256)")
else
  if [[ -n "$ZONE" && "${ZONE_CHECK:-1}" != 0 && " $TPU_ZONES " != *" $ZONE "* ]]; then
    problems+=("ZONE=$ZONE has no $TPU_GENERATION TPUs (zones: $TPU_ZONES; https://cloud.google.com/tpu/docs/regions-zones; ZONE_CHECK=0 if it has them now)")
  fi
  runtime_for="$(runtime_generation "$runtime")"
  if [[ -n "$runtime_for" && "$runtime_for" != "$TPU_GENERATION" ]]; then
    problems+=("RUNTIME_VERSION=$runtime is the $runtime_for image; $ACCELERATOR_TYPE needs $TPU_RUNTIME (or leave RUNTIME_VERSION unset)")
  fi
  runtime="${runtime:-$TPU_RUNTIME}"
fi
case "$capacity" in
  on-demand | spot | reserved | best-effort) ;;
  *) problems+=("CAPACITY=$capacity: on-demand, spot, reserved or best-effort") ;;
esac
if [[ -n "${VALID_UNTIL:-}" && ! "$VALID_UNTIL" =~ ^([0-9]+[dhms])+$ ]]; then
  problems+=("VALID_UNTIL=$VALID_UNTIL is not a duration (e.g. 30m, 6h, 2d, 1d12h)")
fi
if [[ "$wait_active" != 0 && "$wait_active" != 1 ]]; then
  problems+=("WAIT=$wait_active: 1 (wait until ACTIVE) or 0")
fi
if [[ ! "$poll_s" =~ ^[0-9]+$ ]]; then
  problems+=("POLL_S=$poll_s: seconds between state checks, an integer")
fi
check_settings_done "scripts/tpu/create.sh"

# best-effort is only in gcloud's alpha track.
track=()
capacity_flag=()
case "$capacity" in
  spot) capacity_flag=(--spot) ;;
  reserved) capacity_flag=(--reserved) ;;
  best-effort) track=(alpha) capacity_flag=(--best-effort) ;;
esac
args=(create "$QUEUED_RESOURCE" --node-id="$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE"
  --runtime-version="$runtime" "${capacity_flag[@]}")
if [[ -n "${VALID_UNTIL:-}" ]]; then
  args+=(--valid-until-duration="$VALID_UNTIL")
fi
echo "Requesting $ACCELERATOR_TYPE ($TPU_GENERATION, $TPU_HOSTS host(s), $runtime, $capacity)" \
  "as queued resource $QUEUED_RESOURCE in $ZONE, project $PROJECT" >&2
run gcloud "${track[@]}" compute tpus queued-resources "${args[@]}" "${TPU_FLAGS[@]}"

if [[ "$wait_active" != 1 ]]; then
  exit 0
fi
# Wait for the request to be filled; interrupting leaves it queued (status.sh shows it).
state_cmd=(describe "$QUEUED_RESOURCE" --format='value(state.state)')
if [[ "$DRY_RUN" == 1 ]]; then
  queued_resources "${state_cmd[@]}"
  exit 0
fi
last=""
while true; do
  if ! state="$(queued_resources "${state_cmd[@]}")"; then
    echo "error: could not read the state of queued resource $QUEUED_RESOURCE (above); the" \
      "request stays as it was: scripts/tpu/status.sh" >&2
    exit 1
  fi
  if [[ "$state" != "$last" ]]; then
    echo "$(date +%H:%M:%S) queued resource $QUEUED_RESOURCE: $state" >&2
    last="$state"
  fi
  case "$state" in
    ACTIVE) exit 0 ;;
    FAILED | SUSPENDED | SUSPENDING)
      echo "error: queued resource $QUEUED_RESOURCE is $state; scripts/tpu/status.sh says why," \
        "scripts/tpu/delete.sh removes it" >&2
      exit 1
      ;;
  esac
  sleep "$poll_s"
done
