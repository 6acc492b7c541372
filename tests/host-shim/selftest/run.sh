#!/bin/sh
# Builds the host shim and mod_shim_selftest with gcc, runs selftest.script through the shim and
# checks the output. VALGRIND=1 runs the shim under valgrind as well. Prints "N passed, N failed".
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SHIM_DIR=$(dirname "$HERE")
ROOT=$(cd "$SHIM_DIR/../.." && pwd)
if [ -z "${FSWTCH_SRC:-}" ]; then
	FSWTCH_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/fswtch-src-0.1.8 2>/dev/null | head -n 1)
fi
if [ -z "$FSWTCH_SRC" ] || [ ! -d "$FSWTCH_SRC/freeswitch/src/include" ]; then
	echo "fswtch-src-0.1.8 not found (set FSWTCH_SRC, or run cargo fetch)" >&2
	exit 2
fi
FS="$FSWTCH_SRC/freeswitch"
INC="-I$FS/src/include -I$FS/libs/apr/include -I$FS/libs/libteletone/src -I$ROOT/include/fswtch-compat"
OUT=${OUT:-$(mktemp -d)}
CC=${CC:-gcc}

$CC -std=gnu99 -g -O1 -Wall -Wextra -Werror $INC -rdynamic -o "$OUT/host-shim" "$SHIM_DIR/host_shim.c" -ldl -lpthread || exit 1
$CC -std=gnu99 -g -Wall -Wextra -Werror -fPIC -shared $INC -o "$OUT/mod_shim_selftest.so" "$HERE/mod_shim_selftest.c" || exit 1
sed "s#@MOD@#$OUT/mod_shim_selftest.so#g" "$HERE/selftest.script" > "$OUT/selftest.script"

RUN="$OUT/host-shim"
if [ "${VALGRIND:-0}" = 1 ]; then
	RUN="valgrind -q --error-exitcode=1 --leak-check=full $RUN"
fi
$RUN --conf-dir "$HERE/conf" --script "$OUT/selftest.script" > "$OUT/stdout" 2> "$OUT/stderr"
rc=$?

pass=0
fail=0
check() { # description, file, fixed string expected in it
	if grep -qF -- "$3" "$OUT/$2"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL: $1 (no '$3' in $2)"
	fi
}
count() { # description, file, fixed string, expected count of lines
	n=$(grep -cF -- "$3" "$OUT/$2")
	if [ "$n" = "$4" ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL: $1 ('$3' $n times in $2, expected $4)"
	fi
}

if [ "$rc" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: shim exit status $rc"; fi
check "load" stdout "load_status SUCCESS"
check "double load refused" stdout "<<< ERR Module already loaded"
count "three bindings after load" stdout "module=mod_shim_selftest" 3
check "usage on empty api" stdout "out -USAGE: selftest"
check "api args stripped" stdout "out +OK hello world"
check "failing api" stdout "out -ERR failing on purposeCOMMAND RETURNED ERROR!"
check "unknown api" stdout "out INVALID COMMAND!"
check "var set" stdout "var selftest_result=ok"
check "hostile bytes escaped" stdout "var selftest_cid=+1555\\x01\\xFF"
check "data expanded" stdout "var current_application_data=some +1555\\x01\\xFF data"
check "var_check refusal logged CRIT" stderr "[CRIT] host_shim.c"
check "var_check refusal message" stderr "Invalid data (\${selftest_refused} contains a variable)"
check "unchecked var kept" stdout "var selftest_unchecked=\${allowed}"
check "invalid application" stderr "Invalid Application nosuch_app"
check "custom event delivered" stderr "custom seen caller=+1555"
check "reloadxml delivered" stderr "reloadxml seen"
check "config element found, comments gone" stderr "config: <configuration name=\"selftest.conf\" description=\"shim self-test\">"
check "hangup event headers" stderr "hangup seen uuid=u1 cid=+1555"
check "first hangup cause wins" stderr "cause=DESTINATION_OUT_OF_ORDER result=ok"
check "answered" stdout "@header Answer-State: answered"
check "ring fires CHANNEL_PROGRESS once" stdout " CHANNEL_PROGRESS=1 "
check "session log has uuid" stderr "[u1] app on shim/u1"
check "busy module not unloaded" stdout "<<< ERR Module in use."
check "force unload waits and closes" stdout "dlclose yes"
count "async jobs finished" stdout "app_status SUCCESS pre_answered" 3
check "unload hung up the calls of its apps" stderr "[c1] Hangup shim/c1 [CS_EXECUTE] [MANAGER_REQUEST]"
check "reload reloads XML first" stdout "+OK Reloading XML"
check "force unload warning" stderr "Spin the barrel and pull the trigger"
check "leaked binding reported" stdout "leak binding id=mod_shim_selftest event=RELOADXML subclass=-"
count "no leak on clean unload" stdout "leaks 0" 2
check "dangling binding not called" stderr "its module was unloaded without unbinding"
check "dlopen error" stdout "<<< ERR dlopen failed"
check "esc prefix" stdout "echo tab\\x09here A"
check "raw echo" stdout "echo raw \\\\x41 \"unbalanced"
check "tokenizer error" stdout "<<< ERR syntax error"
check "unknown command" stdout "<<< ERR unknown command"
check "summary" stdout "summary bindings_left 1"
check "summary events" stdout "summary events_fired total="
echo "host-shim selftest: $pass passed, $fail failed"
[ "$fail" = 0 ]
