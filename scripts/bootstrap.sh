#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for Tether: Mosquitto (when missing), a virtualenv in .venv
# and the project with its dev extra. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; exit 1
  fi
}

apt_packages=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_packages+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || apt_packages+=(mosquitto-clients)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_packages+=(python3-venv)
# The dashboard tests drive Debian's headless Chromium (Playwright uses it; it downloads nothing).
if [ "${TETHER_NO_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
  apt_packages+=(chromium)
fi
# The contract test with the npm clients people use (partysocket, eventsource).
command -v node >/dev/null 2>&1 || apt_packages+=(nodejs npm)
if [ ${#apt_packages[@]} -gt 0 ]; then
  say "installing ${apt_packages[*]} (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  say "creating virtualenv .venv"
  python3 -m venv .venv
fi
stamp=.venv/.tether-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing tether and its dev dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

if [ ! -d tests/node/node_modules ] && command -v npm >/dev/null 2>&1; then
  say "installing the npm clients the contract tests use (tests/node)"
  (cd tests/node && npm ci --no-audit --no-fund --silent)
fi
