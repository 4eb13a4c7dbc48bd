#!/usr/bin/env bash
# Pod start in a libvirt pod VM with runc and with crun as the agent's OCI
# runtime: runs `make demo` with each image in turn, ROUNDS times
# (default 3), and prints each run's step durations side by side, so that
# both runtimes see the same host load. Needs what `make demo` needs.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
steps='agent ready|pause container|container started|exec uname|pod deleted|==> total'
for r in $(seq 1 "$rounds"); do
  for rt in runc crun; do
    log=$(mktemp)
    if ! PODVM_OCI_RUNTIME=$rt ./scripts/demo.sh >"$log" 2>&1; then
      cat "$log"; rm -f "$log"; exit 1
    fi
    echo "round $r, $rt (load $(cut -d' ' -f1 /proc/loadavg)):"
    grep -E "$steps" "$log" | sed -e 's/^==> /  /' -e 's/: Linux [^ ]* [^ ]*//'
    rm -f "$log"
  done
done
