#!/usr/bin/env bash
# Every test: formatting, lints, the workspace's unit and integration tests (the module loaded
# into the host shim, the sidecar, the emulator), the third-party client conformance suites, the
# agent console in chromium (tests/browser), the Service Cloud Voice connector (scv-connector), a
# short run of every fuzz target, the shim tests under AddressSanitizer and ThreadSanitizer, the
# Debian package check (as root), and the real-FreeSWITCH suite when FREESWITCH_PREFIX points at
# an installed FreeSWITCH.
set -uo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"
log_dir="${TEST_LOG_DIR:-$top/target/test-logs}"
mkdir -p "$log_dir"

"$top/scripts/install-deps.sh" || exit 1

failed_steps=()
passed=0 failed=0 skipped=0

step() {
  local name="$1"; shift
  echo "=== $name: $*"
  if "$@" 2>&1 | tee "$log_dir/$name.log"; then
    echo "=== $name: ok"
  else
    echo "=== $name: FAILED"
    failed_steps+=("$name")
  fi
}

count_cargo() {
  local p f s
  p=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed; [0-9]+ ignored' "$1" | awk '{p+=$4; f+=$6; i+=$8} END {print p+0, f+0, i+0}')
  read -r p f s <<<"$p"
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step cargo-test cargo test --workspace --no-fail-fast
count_cargo "$log_dir/cargo-test.log"

if [ -x "$top/scripts/conformance.sh" ]; then
  step conformance "$top/scripts/conformance.sh"
  read -r p f <<<"$(grep -hoE '^[0-9]+ passed, [0-9]+ failed$' "$log_dir/conformance.log" | tail -1 | awk '{print $1, $3}')"
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
fi

# The agent console in Debian's chromium (playwright-core), Open CTI in a test Salesforce host.
step browser "$top/tests/browser/run.sh"
read -r p f <<<"$(grep -hoE '^browser: [0-9]+ passed, [0-9]+ failed' "$log_dir/browser.log" | tail -1 | awk '{print $2, $4}')"
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))

# The Service Cloud Voice connector: committed bundle matches its source, vendor contract tests.
step scv-connector "$top/scripts/scv-connector-test.sh"
read -r p f <<<"$(grep -hoE '^scv-connector: [0-9]+ passed, [0-9]+ failed' "$log_dir/scv-connector.log" | tail -1 | awk '{print $2, $4}')"
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))

# Every fuzz target for FUZZ_SECONDS each (cargo-fuzz, nightly; fuzz/README.md).
step fuzz "$top/scripts/fuzz.sh" "${FUZZ_SECONDS:-20}"
read -r p f <<<"$(grep -hoE '^fuzz: [0-9]+ passed, [0-9]+ failed' "$log_dir/fuzz.log" | tail -1 | awk '{print $2, $4}')"
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))

# The shim tests against the module and host shim built with AddressSanitizer and ThreadSanitizer.
step sanitizers "$top/scripts/sanitize.sh"
read -r p f <<<"$(grep -hoE '^sanitizers: [0-9]+ passed, [0-9]+ failed' "$log_dir/sanitizers.log" | tail -1 | awk '{print $2, $4}')"
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))

# The Debian package: built (release, lintian), installed, checked, removed and purged. Needs
# root and dpkg; otherwise it says SKIPPED.
if [ -x "$top/tests/package/check-deb.sh" ]; then
  step package "$top/tests/package/check-deb.sh"
  if grep -q '^package: SKIPPED' "$log_dir/package.log"; then
    skipped=$((skipped + 1))
  else
    read -r p f <<<"$(grep -hoE '^package: [0-9]+ passed, [0-9]+ failed' "$log_dir/package.log" | tail -1 | awk '{print $2, $4}')"
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  fi
fi

if [ -n "${FREESWITCH_PREFIX:-}" ]; then
  step freeswitch "$top/tests/freeswitch/run.sh"
  read -r p f <<<"$(grep -hoE '^freeswitch: [0-9]+ passed, [0-9]+ failed' "$log_dir/freeswitch.log" | tail -1 | awk '{print $2, $4}')"
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
else
  echo "=== freeswitch: SKIPPED (FREESWITCH_PREFIX is not set; the real-FreeSWITCH suite needs an installed FreeSWITCH)"
  skipped=$((skipped + 1))
fi

if ((${#failed_steps[@]})); then
  echo "failed steps: ${failed_steps[*]}"
  [ "$failed" -gt 0 ] || failed=${#failed_steps[@]}
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ ${#failed_steps[@]} -eq 0 ]
