#!/usr/bin/env bash
# The module and the host shim built with AddressSanitizer and with ThreadSanitizer, each into a
# target directory of its own, and the shim tests (the real .so loaded into tests/host-shim) run
# against each build. Prints "sanitizers: N passed, N failed": the tests' counts, plus one
# failure per sanitizer report (a report fails the run even when the test around it passed).
#
# Usage: scripts/sanitize.sh [address|thread ...]   (default: both)
#
# How it works (fuzz/README.md has the why):
# - The module: nightly rustc with -Zsanitizer=<name> for the target only (--target, so build
#   scripts and proc macros stay plain); ThreadSanitizer also rebuilds std (-Zbuild-std, needs
#   the rust-src component), since uninstrumented std atomics would show as races.
# - The shim: build.rs compiles it with gcc -fsanitize=<name> and links it with the sanitizer
#   runtime of the same rustc (NATTERBOX_HOST_SHIM_SANITIZER); the .so resolves the runtime
#   from the shim as FreeSWITCH's modules resolve the core from freeswitch.
# - The tests: the ordinary test binaries (stable, target/), told by NATTERBOX_TEST_MODULE and
#   NATTERBOX_TEST_HOST_SHIM to load the sanitized pair. Reports go to files, since the tests
#   discard the shim's stderr.
set -u -o pipefail

top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"
log_dir="${SANITIZE_LOG_DIR:-$top/target/sanitize-logs}"
mkdir -p "$log_dir"
triple="$(rustc -vV | sed -n 's/^host: //p')"
sanitizers=("$@")
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(address thread)

# The shim tests: module_lookup (lookups, cache, refresh, breaker, reloads, stale-while-
# revalidate, tenants, unload and load with lookups in flight: the concurrency ThreadSanitizer
# is for), less the four whose assertions are wall-clock budgets (a 300 ms deadline met within
# 1 s, a refused refresh within 1.2 s, a refresh and 500 concurrent lookups within the 2 s lookup
# timeout). Sanitizers slow the module 2-15x, which breaks those budgets without any memory
# error or race; they run, with their budgets, in the ordinary cargo test step.
test_args=(--test module_lookup)
skips=(--skip a_slow_salesforce_never_holds_the_call_past_its_deadline
  --skip a_refresh_that_brings_no_new_token_ends_as_unauthorized
  --skip an_expired_session_is_refreshed_once_within_the_deadline
  --skip five_hundred_concurrent_lookups_of_one_number_make_one_request)

passed=0 failed=0
die() { echo "sanitizers: $*" >&2; echo "sanitizers: $passed passed, $((failed + 1)) failed"; exit 1; }

rustup toolchain list | grep -q '^nightly' ||
  rustup toolchain install nightly --profile minimal >/dev/null || die "cannot install the nightly toolchain"
if [[ " ${sanitizers[*]} " == *" thread "* ]] &&
    ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain nightly >/dev/null || die "cannot add rust-src to nightly (ThreadSanitizer rebuilds std)"
fi

echo "== building the test binaries"
cargo test --no-run "${test_args[@]}" >"$log_dir/tests-build.log" 2>&1 || { tail -30 "$log_dir/tests-build.log"; die "cargo test --no-run failed"; }

for sanitizer in "${sanitizers[@]}"; do
  # ThreadSanitizer: std rebuilt instrumented, and dependencies optimized (opt-level 2, the
  # module's own crates stay debug): unoptimized rustls, regex and libphonenumber under TSan
  # take longer than the 2 s lookup timeout for a first lookup.
  case "$sanitizer" in
    address) build_args=() ;;
    thread) build_args=(-Zbuild-std --config 'profile.dev.package."*".opt-level=2') ;;
    *) die "unknown sanitizer $sanitizer (address or thread)" ;;
  esac
  dir="$top/target/sanitize-$sanitizer"
  echo "== $sanitizer: building the module and the host shim ($dir)"
  start=$SECONDS
  NATTERBOX_HOST_SHIM_SANITIZER="$sanitizer" RUSTFLAGS="-Zsanitizer=$sanitizer" \
    cargo +nightly build "${build_args[@]}" -p mod_natterbox_sf --lib --target "$triple" \
      --target-dir "$dir" --message-format=json-render-diagnostics \
      >"$log_dir/$sanitizer-build.json" 2>"$log_dir/$sanitizer-build.log" ||
    { tail -30 "$log_dir/$sanitizer-build.log"; die "$sanitizer build failed"; }
  echo "   took $((SECONDS - start)) s"
  read -r module shim < <(python3 - "$log_dir/$sanitizer-build.json" <<'PY'
import json, sys
module = shim = ""
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and "cdylib" in m["target"]["kind"]:
        module = next(f for f in m["filenames"] if f.endswith(".so"))
    if m.get("reason") == "build-script-executed" and "mod_natterbox_sf" in m["package_id"]:
        shim = m["out_dir"] + "/host-shim"
print(module, shim)
PY
)
  [ -f "${module:-}" ] && [ -x "${shim:-}" ] || die "$sanitizer: built module or shim not found"
  runtime_init="__$([ "$sanitizer" = address ] && echo asan || echo tsan)_init"
  nm -D --undefined-only "$module" >"$log_dir/$sanitizer-imports.txt"
  grep -qw "$runtime_init" "$log_dir/$sanitizer-imports.txt" || die "$module is not instrumented for $sanitizer"

  reports="$log_dir/$sanitizer-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  echo "== $sanitizer: ${test_args[*]} ${skips[*]} against $module"
  start=$SECONDS
  # ASan: leaks are checked at the shim's exit (detect_leaks), use after return is checked.
  # TSan: report every race (not only the first); keep going so one run shows them all.
  NATTERBOX_TEST_MODULE="$module" NATTERBOX_TEST_HOST_SHIM="$shim" \
    ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:detect_stack_use_after_return=1:abort_on_error=0" \
    TSAN_OPTIONS="log_path=$reports/tsan:second_deadlock_stack=1:history_size=4" \
    cargo test "${test_args[@]}" -- --test-threads=2 "${skips[@]}" >"$log_dir/$sanitizer-tests.log" 2>&1
  echo "   took $((SECONDS - start)) s"
  read -r p f < <(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log_dir/$sanitizer-tests.log" |
    awk '{p+=$4; f+=$6} END {print p+0, f+0}')
  n_reports=$(find "$reports" -type f | wc -l)
  echo "   tests: $p passed, $f failed; sanitizer reports: $n_reports"
  grep -E '^test .* FAILED$' "$log_dir/$sanitizer-tests.log" | sed 's/^/   /'
  for report in "$reports"/*; do
    [ -f "$report" ] || continue
    echo "   --- $report"
    grep -E '^(==[0-9]+==ERROR|WARNING: ThreadSanitizer|SUMMARY)' "$report" | head -5 | sed 's/^/   /'
  done
  passed=$((passed + p))
  failed=$((failed + f + n_reports))
  [ "$p" -gt 0 ] || failed=$((failed + 1))
done

echo "sanitizers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
