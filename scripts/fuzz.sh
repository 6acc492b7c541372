#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 20) and prints
# "fuzz: N passed, N failed". A target fails when libFuzzer finds an input that panics, breaks
# one of the target's asserted properties, leaks, times out or exhausts memory; the input is
# left in fuzz/artifacts/<target>/ and the log in $FUZZ_LOG_DIR (target/fuzz-logs).
#
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]
# Needs the nightly toolchain and cargo-fuzz; installs cargo-fuzz (cargo install --locked) when
# it is missing. Longer runs: fuzz/README.md.
set -u -o pipefail

top="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-20}"
shift || true
log_dir="${FUZZ_LOG_DIR:-$top/target/fuzz-logs}"
mkdir -p "$log_dir"

passed=0 failed=0
die() { echo "fuzz: $*" >&2; echo "fuzz: $passed passed, $((failed + 1)) failed"; exit 1; }

rustup toolchain list | grep -q '^nightly' ||
  rustup toolchain install nightly --profile minimal >/dev/null || die "cannot install the nightly toolchain"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install --locked)"
  start=$SECONDS
  cargo install cargo-fuzz --locked >"$log_dir/install.log" 2>&1 || { tail -20 "$log_dir/install.log"; die "cargo install cargo-fuzz failed"; }
  echo "   took $((SECONDS - start)) s"
fi

cd "$top"
echo "== building the fuzz targets (nightly, AddressSanitizer)"
start=$SECONDS
cargo +nightly fuzz build --fuzz-dir fuzz >"$log_dir/build.log" 2>&1 || { tail -30 "$log_dir/build.log"; die "cargo fuzz build failed"; }
echo "   took $((SECONDS - start)) s"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi
[ ${#targets[@]} -gt 0 ] || die "no fuzz targets"

for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus" "fuzz/seeds/$target"
  log="$log_dir/$target.log"
  # The growing corpus first (new inputs go there), the committed seeds second. -timeout: one
  # input taking over 10 s is a hang; -rss_limit_mb: a parser must not need gigabytes.
  # -seed: the same mutations in the same order on every run (FUZZ_SEED, default 1), so a short
  # CI run explores the same inputs each time and fails only on a change of the code; long runs
  # for new findings set FUZZ_SEED=0 (libFuzzer then picks one) or a seed of their own.
  if cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" "fuzz/seeds/$target" -- \
      -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    echo "ok      $target (${seconds} s, ${runs:-?} inputs, corpus $(find "$corpus" -type f | wc -l))"
    passed=$((passed + 1))
  else
    echo "FAILED  $target: see $log; the input is in fuzz/artifacts/$target/"
    grep -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)|Test unit written' "$log" | head -5 | sed 's/^/        /'
    failed=$((failed + 1))
  fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
