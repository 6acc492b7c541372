#!/usr/bin/env bash
# The Service Cloud Voice connector (scv-connector/): the committed bundle is what the source
# builds to, and the vendor contract tests (node's test runner) pass. Prints
# "scv-connector: N passed, M failed" for scripts/test.sh.
set -uo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top/scv-connector" || exit 1
check_failed=0
npm run --silent check || check_failed=1
out="$(npm test --silent 2>&1)"
status=$?
echo "$out"
pass=$(grep -oE '^# pass [0-9]+' <<<"$out" | awk '{print $3}' | tail -1)
fail=$(grep -oE '^# fail [0-9]+' <<<"$out" | awk '{print $3}' | tail -1)
pass=${pass:-0}
fail=$(( ${fail:-0} + check_failed ))
[ "$status" -eq 0 ] || [ "$fail" -gt 0 ] || fail=1
echo "scv-connector: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
