#!/usr/bin/env bash
# Copies this checkout to every worker of $TPU_NAME, installs it there (Python venv, the
# requirements and the TPU build of the same jax), starts train.py with the given flags on
# every worker (the same command everywhere: jax.distributed finds the other hosts from the
# TPU environment), then streams the logs (logs.sh).
#
#   scripts/tpu/launch.sh --config=configs/resnet.py:50 --workdir=gs://BUCKET/r50 \
#       --config.data.data_dir=gs://BUCKET/tensorflow_datasets
#   SKIP_INSTALL=1 scripts/tpu/launch.sh ...   # code changed, requirements did not
#   DRY_RUN=1 scripts/tpu/launch.sh ...        # print the gcloud commands only
#
# A pod slice needs a --workdir every host can write (gs://...): every process writes its
# share of each checkpoint. Settings: see common.sh.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ $# -eq 0 ]]; then
  echo "usage: $0 TRAIN_FLAGS...   (e.g. --config=configs/resnet.py:50 --workdir=gs://B/r50)" >&2
  exit 2
fi

# 1. Pack the working tree: tracked files and new ones git does not ignore (no .venv,
#    workdirs or logs), so uncommitted edits travel too.
tarball="${TMPDIR:-/tmp}/cnnx-$TPU_NAME.tar.gz"
filelist="${TMPDIR:-/tmp}/cnnx-$TPU_NAME.files"
git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard >"$filelist"
run tar -czf "$tarball" -C "$REPO_ROOT" --null -T "$filelist"

# 2. Copy it to every worker and unpack it over the old code (the venv stays).
tpu_vm scp "$tarball" "$TPU_NAME:cnnx.tar.gz" --worker=all
unpack="mkdir -p ~/$REMOTE_DIR && find ~/$REMOTE_DIR -mindepth 1 -maxdepth 1 ! -name .venv"
unpack+=" -exec rm -rf {} + && tar -xzf ~/cnnx.tar.gz -C ~/$REMOTE_DIR"
tpu_vm ssh "$TPU_NAME" --worker=all --command="$unpack"

# 3. Install on every worker (in parallel): Python >= 3.11, requirements, jax[tpu].
if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  tpu_vm ssh "$TPU_NAME" --worker=all --command="bash ~/$REMOTE_DIR/scripts/tpu/remote_setup.sh"
fi

# 4. Start train.py on every worker, detached (it survives a dropped connection).
train_args="$(quote_command "$@")"
tpu_vm ssh "$TPU_NAME" --worker=all \
  --command="bash ~/$REMOTE_DIR/scripts/tpu/remote_train.sh $train_args"

# 5. Follow the logs until train.py ends on every worker.
exec "$(dirname "${BASH_SOURCE[0]}")/logs.sh"
