#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for Tether. Safe to run again; it only does what is missing.
#
#   ./scripts/bootstrap.sh --runtime   what `tether up` needs: Mosquitto and a .venv with the
#                                      project alone (pip install -e .); what ./scripts/run.sh uses
#   ./scripts/bootstrap.sh [--dev]     the above plus the dev extra (pytest, mypy, ruff, playwright,
#                                      schemathesis, testcontainers), Chromium and the npm clients
#                                      of the contract tests; what ./scripts/test.sh uses
#   add --plan                         print what a fresh machine would get, change nothing
set -euo pipefail
cd "$(dirname "$0")/.."

mode=dev
plan=0
for arg in "$@"; do
  case "$arg" in
    --runtime) mode=runtime ;;
    --dev) mode=dev ;;
    --plan) plan=1 ;;
    *) echo "bootstrap.sh: unknown argument $arg (use --runtime, --dev, --plan)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Under --plan every step is printed as "plan: <command>" as if nothing were installed yet.
run() {
  if [ "$plan" = 1 ]; then echo "plan: $*"; else "$@"; fi
}
run_quietly() {
  if [ "$plan" = 1 ]; then echo "plan: $*"; else "$@" >/dev/null; fi
}
missing() { [ "$plan" = 1 ] || ! eval "$1" >/dev/null 2>&1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; exit 1
  fi
}

apt_packages=()
missing 'command -v mosquitto || [ -x /usr/sbin/mosquitto ]' && apt_packages+=(mosquitto)
missing 'command -v mosquitto_pub' && apt_packages+=(mosquitto-clients)
missing "python3 -c 'import venv, ensurepip'" && apt_packages+=(python3-venv)
if [ "$mode" = dev ]; then
  # The dashboard tests drive Debian's headless Chromium (Playwright uses it; it downloads nothing).
  if [ "${TETHER_NO_BROWSER:-0}" != 1 ] && missing 'command -v chromium'; then
    apt_packages+=(chromium)
  fi
  # The contract test with the npm clients people use (partysocket, eventsource).
  missing 'command -v node' && apt_packages+=(nodejs npm)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  say "installing ${apt_packages[*]} (apt)"
  run as_root apt-get update -qq
  run_quietly as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

if missing '[ -x .venv/bin/python ]'; then
  say "creating virtualenv .venv"
  run python3 -m venv .venv
fi
# One stamp per mode: a dev install has the runtime too, so --runtime is satisfied by either
# (.tether-installed is what a dev install was stamped with before there were two modes).
if [ "$mode" = dev ]; then
  spec='.[dev]' stamps=(.venv/.tether-installed-dev .venv/.tether-installed)
  what="tether and its dev dependencies"
else
  spec='.' stamps=(.venv/.tether-installed-runtime .venv/.tether-installed-dev .venv/.tether-installed)
  what="tether (runtime only; ./scripts/test.sh adds the dev tools)"
fi
installed=0
for stamp in "${stamps[@]}"; do
  if [ "$plan" = 0 ] && [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then installed=1; fi
done
if [ "$installed" = 0 ]; then
  say "installing $what into .venv"
  run .venv/bin/python -m pip install -q --upgrade pip
  run .venv/bin/python -m pip install -q -e "$spec"
  run touch "${stamps[0]}"
fi

if [ "$mode" = dev ] && missing '[ -d tests/node/node_modules ]' \
  && { [ "$plan" = 1 ] || command -v npm >/dev/null 2>&1; }; then
  say "installing the npm clients the contract tests use (tests/node)"
  run env -C tests/node npm ci --no-audit --no-fund --silent
fi
