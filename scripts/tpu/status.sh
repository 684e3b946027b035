#!/usr/bin/env bash
# Shows the queued resources in $ZONE (their state: WAITING_FOR_RESOURCES, PROVISIONING,
# ACTIVE, SUSPENDED, FAILED...) and the details of $QUEUED_RESOURCE (why it failed, when it
# expires).
#
#   scripts/tpu/status.sh
#   DRY_RUN=1 scripts/tpu/status.sh        # print the gcloud commands only
#
# Settings: see common.sh.

# shellcheck source=scripts/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_target_settings
check_settings_done "scripts/tpu/status.sh"

queued_resources list
queued_resources describe "$QUEUED_RESOURCE"
