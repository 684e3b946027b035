#!/usr/bin/env bash
# Runs on each TPU VM worker (launch.sh starts it): train.py with the given flags, detached
# from the ssh session; output in ~/cnnx/train.log, process id in ~/cnnx/train.pid.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [[ -f train.pid ]] && kill -0 "$(cat train.pid)" 2>/dev/null; then
  echo "$(hostname): train.py is already running (pid $(cat train.pid)); stop.sh stops it." >&2
  exit 1
fi
nohup .venv/bin/python train.py "$@" >train.log 2>&1 </dev/null &
echo "$!" >train.pid
echo "$(hostname): train.py started (pid $!), log $(pwd)/train.log"
