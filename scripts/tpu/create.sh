#!/usr/bin/env bash
# Creates the Cloud TPU VM $TPU_NAME (one host, or every host of a pod slice).
#
#   ACCELERATOR_TYPE=v4-32 ZONE=us-central2-b scripts/tpu/create.sh
#   DRY_RUN=1 scripts/tpu/create.sh        # print the gcloud command only
#
# Settings: see common.sh.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

args=(create "$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION")
if [[ "$SPOT" == 1 ]]; then
  args+=(--spot)
fi
tpu_vm "${args[@]}"
