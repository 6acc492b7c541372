#!/usr/bin/env bash
# The agent console in a real browser: Debian's chromium (/usr/bin/chromium, or $CHROMIUM)
# driven by playwright-core, against the real sidecar, the real module in the host shim and the
# org emulator (console.test.js; call control with the FreeSWITCH command each button runs,
# control.test.js), framed by a test host playing Salesforce's side of Open CTI
# (opencti.test.js), against protocol v1's server frames played by the test
# (protocol.test.js), and the Service Cloud Voice connector framed by a test host playing
# Salesforce's voice client, with the emulator's VoiceCall records (scv.test.js). Prints the
# pop-to-screen figure and "browser: N passed, N failed".
set -u -o pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$top/target}"
chromium="${CHROMIUM:-/usr/bin/chromium}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() { echo "browser: $*" >&2; echo "browser: 0 passed, 1 failed"; exit 1; }

[ -x "$chromium" ] || fail "no chromium at $chromium (scripts/install-deps.sh installs Debian's chromium)"
command -v openssl >/dev/null || fail "no openssl (the Open CTI test host's certificate)"
(cd "$top" && cargo build -q -p mod_natterbox_sf -p natterbox-sidecar -p sf-emulator) || fail "cargo build failed"
# scripts/install-deps.sh ran `npm ci` already; again only when the lockfile is newer.
[ "$here/node_modules/.package-lock.json" -nt "$here/package-lock.json" ] ||
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1) || { cat "$work/npm.log"; fail "npm ci failed"; }

export CHROMIUM="$chromium" BROWSER_FIGURES="$work/figures"
(cd "$here" && node --test --test-concurrency=1 --test-reporter=tap console.test.js control.test.js opencti.test.js protocol.test.js scv.test.js) >"$work/tap" 2>&1
status=$?
pass=$(grep -E '^# pass ' "$work/tap" | awk '{print $3}')
failed=$(grep -E '^# fail ' "$work/tap" | awk '{print $3}')
if [ -z "$pass" ] || [ -z "$failed" ]; then
  cat "$work/tap"; pass=${pass:-0}; failed=$(( ${failed:-0} + 1 ))
elif [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
  grep -E -A30 '^not ok' "$work/tap"
  [ "$failed" -gt 0 ] || failed=1
fi
grep -E '^ok |^not ok ' "$work/tap" | sed 's/^/  /'
[ -s "$work/figures" ] && sed 's/^/  figure: /' "$work/figures"
echo "browser: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
