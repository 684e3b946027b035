#!/usr/bin/env bash
# Sends SIGTERM to train.py on every worker of $TPU_NAME, as a preemption would: each process
# finishes its step, the run saves a checkpoint and exits (status 143). launch.sh with the
# same flags resumes from it.
#
#   scripts/tpu/stop.sh
#   DRY_RUN=1 scripts/tpu/stop.sh          # print the gcloud command only
#
# Settings: see common.sh.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_target_settings
check_settings_done "scripts/tpu/stop.sh"

tpu_vm ssh "$TPU_NAME" --worker=all \
  --command="kill -TERM \$(cat ~/$REMOTE_DIR/train.pid) 2>/dev/null || echo 'not running'"
