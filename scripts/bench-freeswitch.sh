#!/usr/bin/env bash
# What a lookup costs FreeSWITCH per call, on a real FreeSWITCH with real SIP calls (sipp).
#
#   FREESWITCH_PREFIX=/opt/freeswitch scripts/bench-freeswitch.sh
#
# One FreeSWITCH for the whole run; the variants alternate in short blocks (every round runs
# each variant once, in a rotated order): no lookup, the same again (the A-versus-A control),
# sf_lookup hits, sf_lookup misses (a new caller number per call), the `curl` application
# (mod_curl) asking the Salesforce stand-in the same search, and a Lua script doing it through
# the `curl` API. FreeSWITCH's CPU over each block comes from /proc/<pid>/stat; each round gives
# each variant's CPU per call relative to no lookup in that round, and the report is the median
# of those ratios with their range. The run counts only when the control comes out within ±2 %.
# Also: thread and RSS peaks per variant, p50/p99 setup time (INVITE to 200, sipp's response
# time trace), and with BENCH_CALLGRIND=1 instructions per call under callgrind at a low rate.
#
# Environment (all optional): BENCH_ROUNDS (default 12), BENCH_CALLS (calls per block, 300),
# BENCH_RATE (calls/s, 150), BENCH_CALLGRIND=1 (also the instruction counts; slow), BENCH_CPU=0
# (skip the CPU blocks: with BENCH_CALLGRIND=1, the instruction counts alone),
# BENCH_CALLGRIND_CALLS (calls per variant and round under callgrind, 20), BENCH_CALLGRIND_ROUNDS
# (3), BENCH_LOOKUP_EVENTS
# (the module's lookup-events setting, default true), BENCH_MODULE_SO (another build of the
# module to measure, e.g. an earlier commit's), FS_CARGO_TARGET_DIR (as tests/freeswitch).
# Without FREESWITCH_PREFIX it prints "bench-freeswitch: SKIPPED (…)" and exits 0.
set -uo pipefail

prefix="${FREESWITCH_PREFIX:-}"
if [ -z "$prefix" ]; then
  echo "bench-freeswitch: SKIPPED (FREESWITCH_PREFIX is not set; this benchmark needs an installed FreeSWITCH)"
  exit 0
elif [ ! -x "$prefix/bin/freeswitch" ]; then
  echo "bench-freeswitch: SKIPPED (FREESWITCH_PREFIX=$prefix has no bin/freeswitch)"
  exit 0
fi
for tool in sipp curl ss python3; do
  command -v "$tool" >/dev/null || { echo "bench-freeswitch: needs $tool"; exit 1; }
done
prefix="$(cd "$prefix" && pwd)"
top="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=tests/freeswitch/lib.sh
. "$top/tests/freeswitch/lib.sh"
fs_locate || { echo "bench-freeswitch: $fs_error"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/natterbox-bench.XXXXXX")
fs_pid="" emu_pid=""
finish() {
  fs_stop 20
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null
  if [ -n "${BENCH_KEEP:-}" ]; then echo "# kept $work"; else rm -rf "$work"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM

echo "# building mod_natterbox_sf (release) against $prefix/include/freeswitch, and sf-emulator"
export FREESWITCH_PREFIX="$prefix"
export CARGO_TARGET_DIR="${FS_CARGO_TARGET_DIR:-${CARGO_TARGET_DIR:-$top/target}/freeswitch}"
(cd "$top" && cargo build --release -p mod_natterbox_sf -p sf-emulator) >"$work/build.log" 2>&1 ||
  { tail -20 "$work/build.log"; exit 1; }
# BENCH_MODULE_SO: measure another build of the module (e.g. an earlier commit's) in the same setup.
module_so="${BENCH_MODULE_SO:-$CARGO_TARGET_DIR/release/libmod_natterbox_sf.so}"

"$CARGO_TARGET_DIR/release/sf-emulator" --bind 127.0.0.1:0 >"$work/emulator.json" 2>"$work/emulator.log" &
emu_pid=$!
for _ in $(seq 100); do [ -s "$work/emulator.json" ] && break; sleep 0.1; done
login_url=$(json_str login_url <"$work/emulator.json")
instance_url=$(json_str instance_url <"$work/emulator.json")
[ -n "$instance_url" ] || { cat "$work/emulator.log"; exit 1; }
reply=$(curl -s -u '3MVG9Emu.CC.ClientId.natterbox:cc-app-secret' -d grant_type=client_credentials \
  "$instance_url/services/oauth2/token")
token=$(json_str access_token <<<"$reply")
[ -n "$token" ] || { echo "no token from the emulator: $reply"; exit 1; }
mkdir -p "$work/tokens" "$work/spool" && chmod 700 "$work/tokens"
printf '{"org":"acme","access_token":"%s","instance_url":"%s","issued_at_ms":0,"generation":1}\n' \
  "$token" "$instance_url" >"$work/tokens/acme.json"
chmod 600 "$work/tokens/acme.json"

alloc_port && sip_port=$port && alloc_port && esl_port=$port || { echo "no free ports"; exit 1; }
# The modules the variants need, and no console: the stock log level (debug) goes to the file
# only, what an operator who never changed it pays.
fs_modules="mod_logfile mod_event_socket mod_sofia mod_commands mod_dptools mod_dialplan_xml mod_curl mod_lua"
fs_prepare "$module_so" || { echo "bench-freeswitch: $fs_error"; exit 1; }
mkdir -p "$work/scripts"
for m in mod_curl mod_lua; do
  [ -e "$work/mod/$m.so" ] || { echo "bench-freeswitch: $m is not installed (needed for a variant)"; exit 1; }
done
# Enough sessions for the bursts; no per-second cap below the bench's rate.
sed -i -e 's/name="max-sessions" value="[^"]*"/name="max-sessions" value="5000"/' \
  -e 's/name="sessions-per-second" value="[^"]*"/name="sessions-per-second" value="2000"/' \
  "$conf/autoload_configs/switch.conf.xml"

cat >"$conf/autoload_configs/natterbox_sf.conf.xml" <<EOF
<configuration name="natterbox_sf.conf" description="mod_natterbox_sf benchmark">
  <settings>
    <param name="default-org" value="acme"/>
    <param name="lookup-timeout-ms" value="1000"/>
    <param name="cache-negative-ttl-s" value="3600"/>
    <param name="token-dir" value="$work/tokens"/>
    <param name="event-socket" value="$work/events.sock"/>
    <param name="spool-dir" value="$work/spool"/>
    <param name="lookup-events" value="${BENCH_LOOKUP_EVENTS:-true}"/>
  </settings>
  <orgs>
    <org name="acme" api-version="68.0" default-country="US" login-url="$login_url" allow-insecure-http="true" max-concurrent="50">
      <profile name="default">
        <object name="Contact" fields="Id,Name,OwnerId,Owner.Extension"><map field="Owner.Extension" variable="sf_owner_extension"/></object>
        <object name="Lead" fields="Id,Name,OwnerId,Company"/>
        <object name="Account" fields="Id,Name,OwnerId"/>
      </profile>
    </org>
  </orgs>
</configuration>
EOF

# The search an operator without the module would make per call, as the module makes it.
search_url="$instance_url/services/data/v68.0/search?q=FIND%20%7B\${caller_id_number}%7D%20IN%20PHONE%20FIELDS%20RETURNING%20Contact(Id%2CName%2COwnerId%2COwner.Extension)%2CLead(Id%2CName%2COwnerId%2CCompany)%2CAccount(Id%2CName%2COwnerId)"
cat >"$work/scripts/bench_curl.lua" <<EOF
-- The Lua way: the curl API from a script, the answer into a channel variable.
local number = session:getVariable("caller_id_number")
local url = "$instance_url/services/data/v68.0/search?q=FIND%20%7B" .. number ..
  "%7D%20IN%20PHONE%20FIELDS%20RETURNING%20Contact(Id%2CName%2COwnerId%2COwner.Extension)%2CLead(Id%2CName%2COwnerId%2CCompany)%2CAccount(Id%2CName%2COwnerId)"
local reply = freeswitch.API():execute("curl", url .. " timeout 1 append_headers 'Authorization: Bearer $token'")
session:setVariable("bench_found", tostring(string.find(reply or "", '"Id"', 1, true) ~= nil))
EOF

cat >"$conf/dialplan/public.xml" <<EOF
<include>
  <context name="public">
    <!-- 3000 and 3005: no lookup (3005 is the A-versus-A control). 3001/3002: sf_lookup (hits
         or misses by caller number). 3003: the curl application. 3004: a Lua curl script. -->
    <extension name="bench_none">
      <condition field="destination_number" expression="^300[05]\$">
        <action application="answer"/>
        <action application="hangup"/>
      </condition>
    </extension>
    <extension name="bench_lookup">
      <condition field="destination_number" expression="^300[12]\$">
        <action application="sf_lookup" data="timeout_ms=1000"/>
        <action application="answer"/>
        <action application="hangup"/>
      </condition>
    </extension>
    <extension name="bench_curl_app">
      <condition field="destination_number" expression="^3003\$">
        <action application="curl" data="$search_url timeout 1 append_headers 'Authorization: Bearer $token'"/>
        <action application="answer"/>
        <action application="hangup"/>
      </condition>
    </extension>
    <extension name="bench_lua">
      <condition field="destination_number" expression="^3004\$">
        <action application="lua" data="$work/scripts/bench_curl.lua"/>
        <action application="answer"/>
        <action application="hangup"/>
      </condition>
    </extension>
  </context>
</include>
EOF

# FreeSWITCH up with its SIP profile listening (start_fs [wrapper…]).
start_fs() {
  fs_start "$@" || { echo "bench-freeswitch: $fs_error"; return 1; }
  for _ in $(seq 1500); do
    fscli 'sofia status' | grep -q 'internal.*RUNNING' && return 0
    kill -0 "$fs_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "bench-freeswitch: the internal SIP profile did not start"; tail -30 "$fs_log"; return 1
}
fs_version=$("$fs_bin" -version | awk '{print $3}')
alloc_port && sipp_port=$port && alloc_port && media_port=$port
rc=0
if [ "${BENCH_CPU:-1}" != 0 ]; then
  start_fs || exit 1
  echo "# FreeSWITCH $fs_version (pid $fs_pid), SIP 127.0.0.1:$sip_port, emulator $instance_url, lookup-events=${BENCH_LOOKUP_EVENTS:-true}"
  python3 "$top/scripts/bench_freeswitch.py" cpu --pid "$fs_pid" --sip "127.0.0.1:$sip_port" \
    --scenario "$top/tests/freeswitch/uac_caller.xml" --work "$work/sipp" --sipp-port "$sipp_port" \
    --media-port "$media_port" --rounds "${BENCH_ROUNDS:-12}" --calls "${BENCH_CALLS:-300}" \
    --rate "${BENCH_RATE:-150}" --fs-log "$work/log/freeswitch.log"
  rc=$?
  fs_stop 20
fi

if [ "${BENCH_CALLGRIND:-}" = 1 ]; then
  command -v valgrind >/dev/null || { echo "BENCH_CALLGRIND=1 needs valgrind"; exit 1; }
  echo "# callgrind: FreeSWITCH under valgrind --tool=callgrind, ${BENCH_CALLGRIND_ROUNDS:-3} rounds of ${BENCH_CALLGRIND_CALLS:-20} calls per variant at 2/s"
  fs_start_wait_s=300 start_fs valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p" \
    || exit 1
  python3 "$top/scripts/bench_freeswitch.py" instructions --pid "$fs_pid" --sip "127.0.0.1:$sip_port" \
    --scenario "$top/tests/freeswitch/uac_caller.xml" --work "$work/sipp" --sipp-port "$sipp_port" \
    --media-port "$media_port" --calls "${BENCH_CALLGRIND_CALLS:-20}" \
    --rounds "${BENCH_CALLGRIND_ROUNDS:-3}" --out "$work"
  fs_stop 120
fi
exit $rc
