#!/usr/bin/env bash
# Deletes the Cloud TPU VM $TPU_NAME (every host of the slice; billing stops).
#
#   scripts/tpu/delete.sh
#   DRY_RUN=1 scripts/tpu/delete.sh        # print the gcloud command only
#
# Settings: see common.sh.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

tpu_vm delete "$TPU_NAME" --quiet
