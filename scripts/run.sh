#!/usr/bin/env bash
# The run command: set-up, then start the stack. Today that is the broker with Tether's config
# (dynamic security, persistence) on port 18830; the bridge, gateway and simulator join it as
# `tether up` lands. Extra arguments go to `tether broker`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/tether broker "$@"
