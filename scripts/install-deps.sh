#!/usr/bin/env bash
# Installs what building and testing need on Debian: libclang for bindgen, a C compiler for the
# host shim, pkg-config, and Node.js/npm and Python venv for the third-party client conformance
# tests. Idempotent; run as root (or with sudo).
set -euo pipefail

need=()
command -v cc >/dev/null || need+=(build-essential)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl)
# Fleet tests (tests/module_fleet.rs) and the L2 benchmark start their own redis-server.
[ -x /usr/bin/redis-server ] || command -v redis-server >/dev/null || need+=(redis-server)
# The Debian package check (tests/package/check-deb.sh): lintian, and nm for the module's symbols.
command -v lintian >/dev/null || need+=(lintian)
command -v nm >/dev/null || need+=(binutils)
# The browser tests and the demo (tests/browser, scripts/demo.sh): Debian's chromium, driven by
# playwright-core from npm (which downloads no browser); openssl for the Open CTI test host.
command -v chromium >/dev/null || need+=(chromium)
command -v openssl >/dev/null || need+=(openssl)
# The real-FreeSWITCH suite (tests/freeswitch/run.sh) places its calls with sipp.
[ -z "${FREESWITCH_PREFIX:-}" ] || command -v sipp >/dev/null || need+=(sip-tester)

if ((${#need[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "install-deps: apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: no Rust toolchain; install one with rustup (https://rustup.rs), Rust 1.88 or later" >&2
  exit 1
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" >/dev/null 2>&1 || true
done
top="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! "$top/tests/browser/node_modules/.package-lock.json" -nt "$top/tests/browser/package-lock.json" ]; then
  (cd "$top/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ ! "$top/scv-connector/node_modules/.package-lock.json" -nt "$top/scv-connector/package-lock.json" ]; then
  (cd "$top/scv-connector" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "install-deps: ok"
