#!/usr/bin/env bash
# Runs third-party Salesforce clients, unmodified, against the sf-emulator:
#   jsforce (npm, v3)          tests/conformance/jsforce.test.js      (node --test)
#   simple-salesforce (PyPI)   tests/conformance/test_simple_salesforce.py (pytest)
# Installs what it needs (npm install in tests/conformance; a venv under $CARGO_TARGET_DIR),
# builds the emulator, starts one HTTPS emulator per suite on a free port, and prints
# "N passed, N failed". Exits non-zero on any failure.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONF="$ROOT/tests/conformance"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$CARGO_TARGET_DIR/conformance-venv"
WORK=$(mktemp -d)
PIDS=()
PASSED=0
FAILED=0

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "conformance: $*" >&2; echo "$PASSED passed, $((FAILED + 1)) failed"; exit 1; }

json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())[sys.argv[1]])' "$1"; }

echo "== building sf-emulator"
(cd "$ROOT" && cargo build -q -p sf-emulator --bin sf-emulator) || die "cargo build failed"
BIN="$CARGO_TARGET_DIR/debug/sf-emulator"

echo "== installing jsforce (npm)"
(cd "$CONF" && npm install --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1) || { cat "$WORK/npm.log"; die "npm install failed"; }

echo "== installing simple-salesforce and pytest (pip, venv $VENV)"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV" || die "venv failed"; fi
"$VENV/bin/pip" install -q --disable-pip-version-check simple-salesforce pytest >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; die "pip install failed"; }

# start_emulator NAME -> sets LOGIN_URL INSTANCE_URL ORG_ID CA_FILE
start_emulator() {
    local name=$1 out="$WORK/$1.json"
    "$BIN" --bind 127.0.0.1:0 --tls --batch-size 3 --ca-out "$WORK/$name-ca.pem" >"$out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        [ -s "$out" ] && break
        sleep 0.1
    done
    [ -s "$out" ] || { cat "$WORK/$name.err"; die "emulator $name did not start"; }
    LOGIN_URL=$(json_field login_url <"$out")
    INSTANCE_URL=$(json_field instance_url <"$out")
    ORG_ID=$(json_field org_id <"$out")
    CA_FILE=$(json_field ca_file <"$out")
    echo "   $name: login $LOGIN_URL, instance $INSTANCE_URL"
}

echo "== jsforce"
start_emulator jsforce
(cd "$CONF" && NODE_EXTRA_CA_CERTS="$CA_FILE" SF_LOGIN_URL="$LOGIN_URL" SF_INSTANCE_URL="$INSTANCE_URL" \
    SF_ORG_ID="$ORG_ID" SF_KEY_FILE="$ROOT/tests/sf-emulator/fixtures/test-jwt-private-key.pem" \
    node --test --test-reporter=tap jsforce.test.js) >"$WORK/js.tap" 2>&1
JS_PASS=$(grep -E '^# pass ' "$WORK/js.tap" | awk '{print $3}')
JS_FAIL=$(grep -E '^# fail ' "$WORK/js.tap" | awk '{print $3}')
if [ -z "$JS_PASS" ] || [ -z "$JS_FAIL" ]; then
    cat "$WORK/js.tap"; JS_PASS=${JS_PASS:-0}; JS_FAIL=$(( ${JS_FAIL:-0} + 1 ))
elif [ "$JS_FAIL" -gt 0 ]; then
    grep -E -B2 -A25 '^not ok' "$WORK/js.tap"
fi
echo "   jsforce: $JS_PASS passed, $JS_FAIL failed"
PASSED=$((PASSED + JS_PASS)); FAILED=$((FAILED + JS_FAIL))

echo "== simple-salesforce"
start_emulator simple
(cd "$CONF" && REQUESTS_CA_BUNDLE="$CA_FILE" SF_LOGIN_URL="$LOGIN_URL" SF_INSTANCE_URL="$INSTANCE_URL" \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider test_simple_salesforce.py) >"$WORK/py.log" 2>&1
PY_SUMMARY=$(tail -n 1 "$WORK/py.log")
PY_PASS=$(echo "$PY_SUMMARY" | grep -oE '[0-9]+ passed' | awk '{print $1}')
PY_FAIL=$(echo "$PY_SUMMARY" | grep -oE '[0-9]+ (failed|error|errors)' | awk '{s+=$1} END {print s+0}')
PY_PASS=${PY_PASS:-0}
if [ "$PY_PASS" -eq 0 ] && [ "$PY_FAIL" -eq 0 ]; then PY_FAIL=1; fi
if [ "$PY_FAIL" -gt 0 ]; then cat "$WORK/py.log"; fi
echo "   simple-salesforce: $PY_PASS passed, $PY_FAIL failed"
PASSED=$((PASSED + PY_PASS)); FAILED=$((FAILED + PY_FAIL))

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
