#!/usr/bin/env bash
# The test command: set-up with the dev tools (the dev extra, Chromium, the npm clients), then
# lint, types and the whole suite against a real Mosquitto.
# Extra arguments go to pytest (e.g. ./scripts/test.sh -k broker).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --dev

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy (strict on the packages)"
.venv/bin/mypy
echo "==> pytest"
.venv/bin/python -m pytest "$@"
