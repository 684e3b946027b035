#!/usr/bin/env bash
# Streams train.py's log from every worker of $TPU_NAME into $LOG_DIR/worker-<i>.log (worker 0
# also to this terminal) until train.py has ended on every worker. Safe to interrupt and run
# again: training goes on, and each log is streamed again from its start.
#
#   scripts/tpu/logs.sh
#   DRY_RUN=1 NUM_WORKERS=4 scripts/tpu/logs.sh   # print the gcloud commands only
#
# Settings: see common.sh.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_target_settings
check_settings_done "scripts/tpu/logs.sh"

workers="$(num_workers)"
follow="tail --pid=\$(cat ~/$REMOTE_DIR/train.pid) -n +1 -F ~/$REMOTE_DIR/train.log"
if [[ "$DRY_RUN" != 1 ]]; then
  mkdir -p "$LOG_DIR"
fi
pids=()
for ((i = 1; i < workers; i++)); do
  if [[ "$DRY_RUN" == 1 ]]; then
    tpu_vm ssh "$TPU_NAME" --worker="$i" --command="$follow"
  else
    tpu_vm ssh "$TPU_NAME" --worker="$i" --command="$follow" >"$LOG_DIR/worker-$i.log" 2>&1 &
    pids+=("$!")
  fi
done
if [[ "$DRY_RUN" == 1 ]]; then
  tpu_vm ssh "$TPU_NAME" --worker=0 --command="$follow"
  exit 0
fi
echo "Logs: $LOG_DIR/worker-{0..$((workers - 1))}.log" >&2
tpu_vm ssh "$TPU_NAME" --worker=0 --command="$follow" 2>&1 | tee "$LOG_DIR/worker-0.log"
for pid in "${pids[@]}"; do
  wait "$pid" || true
done
