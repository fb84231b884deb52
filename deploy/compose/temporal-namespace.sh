#!/bin/sh
# Registers the namespace Tollgate runs in (idempotent), once the frontend answers.
set -eu
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do sleep 2; done
temporal operator namespace describe --address "$TEMPORAL_ADDRESS" -n "$TOLLGATE_NAMESPACE" >/dev/null 2>&1 \
  || temporal operator namespace create --address "$TEMPORAL_ADDRESS" -n "$TOLLGATE_NAMESPACE" --retention 7d
echo "namespace $TOLLGATE_NAMESPACE ready"
