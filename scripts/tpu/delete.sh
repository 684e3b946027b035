#!/usr/bin/env bash
# Deletes the Cloud TPU VM $TPU_NAME (every host of the slice; billing stops) with the queued
# resource that holds it (queued-resources delete --force). A TPU VM created without one
# (gcloud compute tpus tpu-vm create) is deleted by itself.
#
#   scripts/tpu/delete.sh
#   DRY_RUN=1 scripts/tpu/delete.sh        # print the gcloud command only
#
# Settings: see common.sh.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_target_settings
check_settings_done "scripts/tpu/delete.sh"

if [[ "$DRY_RUN" != 1 ]] &&
  ! gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE" "${TPU_FLAGS[@]}" \
    --format='value(name)' >/dev/null 2>&1; then
  echo "note: no queued resource $QUEUED_RESOURCE in $ZONE; deleting the TPU VM $TPU_NAME" >&2
  tpu_vm delete "$TPU_NAME" --quiet
else
  queued_resources delete "$QUEUED_RESOURCE" --force --quiet
fi
