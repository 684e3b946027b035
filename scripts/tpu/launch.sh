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
# share of each checkpoint. Settings: see common.sh (TPU_NAME, and ZONE and PROJECT unless
# gcloud's config has them). Every setting is checked before the first gcloud call, and every
# problem is reported at once.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ $# -eq 0 ]]; then
  echo "usage: $0 TRAIN_FLAGS...   (e.g. --config=configs/resnet.py:50 --workdir=gs://B/r50)" >&2
  exit 2
fi

# 0. Check the settings and the train.py flags.
check_target_settings
if [[ -n "$ACCELERATOR_TYPE" ]] && ! tpu_type "$ACCELERATOR_TYPE"; then
  problems+=("ACCELERATOR_TYPE=$ACCELERATOR_TYPE is not a TPU type (e.g. v4-8, v4-32, v5litepod-16, v5p-8, v6e-8)")
fi
workdir=""
for arg in "$@"; do
  case "$arg" in
    --workdir=*) workdir="${arg#--workdir=}" ;;
    --config=*)
      config_file="${arg#--config=}"
      config_file="${config_file%%:*}"
      if ! git -C "$REPO_ROOT" ls-files --error-unmatch -- "$config_file" >/dev/null 2>&1; then
        problems+=("--config=$config_file is not a file tracked by git here (only tracked files are shipped)")
      fi
      ;;
    --workdir | --config) problems+=("write $arg=VALUE (one word), so that it can be checked") ;;
  esac
done
if [[ -z "$workdir" ]]; then
  problems+=("no --workdir=gs://BUCKET/RUN among the train.py flags")
elif [[ "$workdir" != gs://?* ]]; then
  problems+=("--workdir=$workdir is not on Cloud Storage: every host writes its checkpoint shards there, and the VM's disk goes with the VM (use --workdir=gs://BUCKET/RUN)")
fi
check_settings_done "scripts/tpu/launch.sh"

# 1. Pack the tracked files of the working tree (their uncommitted edits included): never
#    untracked files (weights, images, notes lying in the checkout), .venv, workdirs or logs.
tarball="${TMPDIR:-/tmp}/cnnx-$TPU_NAME.tar.gz"
filelist="${TMPDIR:-/tmp}/cnnx-$TPU_NAME.files"
git -C "$REPO_ROOT" ls-files -z --cached >"$filelist"
untracked="$(git -C "$REPO_ROOT" ls-files --others --exclude-standard | wc -l)"
if ((untracked)); then
  echo "note: $untracked untracked file(s) stay here (git add them to ship them)" >&2
fi
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
