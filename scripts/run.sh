#!/usr/bin/env bash
# The run command: set-up of the runtime only (Mosquitto, and a .venv with `pip install -e .`:
# no test tools, no browser, no npm), then the whole stack with a simulated fleet:
# Mosquitto on 127.0.0.1:18830, the bridge and gateway on http://127.0.0.1:8080, and
# ${TETHER_SIMULATE:-20} simulated devices. Extra arguments go to `tether up`
# (e.g. ./scripts/run.sh --http-port 9000 --simulate 100).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --runtime
exec .venv/bin/tether up --simulate "${TETHER_SIMULATE:-20}" "$@"
