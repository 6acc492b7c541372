#!/usr/bin/env bash
# Soak (not a CI test): a real FreeSWITCH with mod_natterbox_sf and the real sidecar against the
# org emulator, driven by sipp at a steady rate for a long time. Every call is looked up
# (known and unknown callers: cache hits, misses, not-founds), found callers are popped to their
# owner's extension, and every call is logged as a Task at hangup. RSS, threads and open file
# descriptors of FreeSWITCH and the sidecar are sampled into a CSV; the summary says whether
# they stayed flat.
#
#   FREESWITCH_PREFIX=/opt/freeswitch scripts/soak-freeswitch.sh
#
# Environment (defaults): SOAK_DURATION_S (600), SOAK_RATE calls/s (5), SOAK_HOLD_MS (2000),
# SOAK_SAMPLE_S (10), SOAK_CALLERS distinct caller numbers (400), SOAK_OUT the CSV
# (target/soak/soak-<date>.csv), SOAK_KEEP=1 keeps the temporary directory. FreeSWITCH runs
# from a temporary copy of its conf (tests/freeswitch/lib.sh); nothing installed is changed.
set -uo pipefail

prefix="${FREESWITCH_PREFIX:-}"
if [ -z "$prefix" ] || [ ! -x "$prefix/bin/freeswitch" ]; then
  echo "soak: SKIPPED (FREESWITCH_PREFIX does not name an installed FreeSWITCH with bin/freeswitch)"
  exit 0
fi
prefix="$(cd "$prefix" && pwd)"
top="$(cd "$(dirname "$0")/.." && pwd)"
here="$top/tests/freeswitch"
# shellcheck source=tests/freeswitch/lib.sh
. "$here/lib.sh"
fs_locate || { echo "soak: $fs_error"; exit 1; }
for tool in sipp curl ss; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is not installed (apt-get install ${tool/sipp/sip-tester})"; exit 1; }
done

duration="${SOAK_DURATION_S:-600}"
rate="${SOAK_RATE:-5}"
hold_ms="${SOAK_HOLD_MS:-2000}"
every="${SOAK_SAMPLE_S:-10}"
ncallers="${SOAK_CALLERS:-400}"
mkdir -p "$top/target/soak"
out="${SOAK_OUT:-$top/target/soak/soak-$(date -u +%Y%m%dT%H%M%SZ).csv}"

work=$(mktemp -d "${TMPDIR:-/tmp}/natterbox-soak.XXXXXX")
fs_pid="" emu_pid="" sidecar_pid="" sipp_pid=""
finish() {
  [ -n "$sipp_pid" ] && kill "$sipp_pid" 2>/dev/null
  fs_stop
  if [ -n "$sidecar_pid" ] && kill "$sidecar_pid" 2>/dev/null; then wait "$sidecar_pid" 2>/dev/null; fi
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null
  if [ -z "${SOAK_KEEP:-}" ]; then rm -rf "$work"; else echo "soak: kept $work"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM
die() { echo "soak: $*" >&2; exit 1; }

# 1. Build: the module against this FreeSWITCH's headers, the emulator and the sidecar, in the
#    usual target dir (only the module crate itself depends on the headers: switching between
#    them rebuilds that crate alone); SOAK_CARGO_TARGET_DIR to use another.
export FREESWITCH_PREFIX="$prefix"
export CARGO_TARGET_DIR="${SOAK_CARGO_TARGET_DIR:-${CARGO_TARGET_DIR:-$top/target}}"
echo "soak: building (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$top" && cargo build --release -p mod_natterbox_sf -p sf-emulator -p natterbox-sidecar) \
  >"$work/build.log" 2>&1 || die "build failed: $(tail -20 "$work/build.log")"
bin="$CARGO_TARGET_DIR/release"

# 2. The emulated org.
"$bin/sf-emulator" --bind 127.0.0.1:0 >"$work/emulator.json" 2>"$work/emulator.log" &
emu_pid=$!
for _ in $(seq 100); do [ -s "$work/emulator.json" ] && break; sleep 0.1; done
login_url=$(json_str login_url <"$work/emulator.json")
instance_url=$(json_str instance_url <"$work/emulator.json")
[ -n "$instance_url" ] || die "the emulator did not start: $(cat "$work/emulator.log")"

# 3. FreeSWITCH's conf, the shared config (module and sidecar), the dialplan.
alloc_port && sip_port=$port && alloc_port && esl_port=$port && alloc_port && admin_port=$port &&
  alloc_port && agent_port=$port || die "no free ports"
fs_prepare "$bin/libmod_natterbox_sf.so" || die "$fs_error"
mkdir -p "$work/tokens" "$work/spool" "$work/state"
cat >"$conf/autoload_configs/natterbox_sf.conf.xml" <<NATTERBOX_CONF
<configuration name="natterbox_sf.conf" description="mod_natterbox_sf soak">
  <settings>
    <param name="default-org" value="acme"/>
    <param name="lookup-timeout-ms" value="1500"/>
    <param name="cache-ttl-s" value="60"/>
    <param name="cache-negative-ttl-s" value="10"/>
    <param name="token-dir" value="$work/tokens"/>
    <param name="event-socket" value="$work/events.sock"/>
    <param name="spool-dir" value="$work/spool"/>
  </settings>
  <sidecar>
    <param name="admin-listen" value="127.0.0.1:$admin_port"/>
    <param name="agent-listen" value="127.0.0.1:$agent_port"/>
    <param name="outbox-db" value="$work/state/outbox.sqlite"/>
  </sidecar>
  <orgs>
    <org name="acme" api-version="68.0" default-country="US" login-url="$login_url" allow-insecure-http="true">
      <auth flow="jwt-bearer" client-id="3MVG9Emu.JWT.ClientId.natterbox" username="integration@acme.example"
            private-key-file="$top/tests/sf-emulator/fixtures/test-jwt-private-key.pem"
            audience="https://login.salesforce.com"/>
      <profile name="default">
        <object name="Contact" fields="Id,Name,OwnerId,Owner.Extension">
          <map field="Owner.Extension" variable="sf_owner_extension"/>
        </object>
        <!-- A Lead's owner may be a queue (polymorphic): Owner.Extension is not a field there. -->
        <object name="Lead" fields="Id,Name,OwnerId,Company"/>
        <object name="Account" fields="Id,Name,OwnerId"/>
      </profile>
      <call-log enabled="true" subject="Call {direction} {from}" status="Completed"/>
      <screen-pop ttl-ms="30000"/>
    </org>
  </orgs>
</configuration>
NATTERBOX_CONF
# Every call: a lookup during routing; a pop to the owner when there is one; answer, hold,
# hang up (the module logs the call at hangup).
cat >"$conf/dialplan/public.xml" <<SOAK_DIALPLAN
<include>
  <context name="public">
    <extension name="natterbox_sf_soak">
      <condition field="destination_number" expression="^3000\$">
        <action application="sf_lookup" data="timeout_ms=1000" inline="true"/>
      </condition>
      <condition field="\${sf_owner_extension}" expression="^(\\d+)\$" break="never">
        <action application="sf_screen_pop" data="extension=\$1 direction=inbound"/>
      </condition>
      <condition field="destination_number" expression="^3000\$">
        <action application="answer"/>
        <action application="sleep" data="$hold_ms"/>
        <action application="hangup"/>
      </condition>
    </extension>
  </context>
</include>
SOAK_DIALPLAN

# 4. The sidecar (tokens, pops, call logs), then FreeSWITCH.
"$bin/natterbox-sidecar" --config "$conf/autoload_configs/natterbox_sf.conf.xml" --log-format json \
  >"$work/sidecar.log" 2>&1 &
sidecar_pid=$!
for _ in $(seq 100); do [ -s "$work/tokens/acme.json" ] && break; sleep 0.2; done
[ -s "$work/tokens/acme.json" ] || die "the sidecar wrote no token: $(tail -5 "$work/sidecar.log")"
fs_start || die "$fs_error"
metric() { curl -s "http://127.0.0.1:$admin_port/metrics" | awk -v s="$1" '$1 == s {print $2}'; }

# Callers: a quarter the seeded Contact (found, then cached), the rest distinct unknown numbers
# (misses, then negative-cache hits), in random order.
{
  echo RANDOM
  for i in $(seq "$ncallers"); do
    if [ $((i % 4)) -eq 0 ]; then echo "+14155550123;"; else printf '+1212555%04d;\n' "$i"; fi
  done
} >"$work/sipp/callers.csv"

# 5. Load and sampling.
total=$((duration * rate))
limit=$((rate * (hold_ms / 1000 + 2) * 2 + 10))
echo "soak: ${duration}s at ${rate} calls/s (${total} calls, hold ${hold_ms} ms), sampling every ${every}s into $out"
(cd "$work/sipp" && sipp "127.0.0.1:$sip_port" -sf "$here/uac_caller.xml" -inf callers.csv -s 3000 \
  -r "$rate" -rp 1000 -m "$total" -l "$limit" -i 127.0.0.1 -nostdin -timeout "$((duration + 120))s" \
  -recv_timeout 15000 >sipp.out 2>&1) &
sipp_pid=$!

sample_proc() { # rss_kb,threads,fds of a pid
  local pid="$1"
  if [ -r "/proc/$pid/status" ]; then
    printf '%s,%s,%s' "$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")" \
      "$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")" "$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)"
  else
    printf ',,'
  fi
}
sample() {
  local channels
  channels=$(fscli 'show channels count' | awk '/total/ {print $1}')
  echo "$1,$(sample_proc "$fs_pid"),$(sample_proc "$sidecar_pid"),${channels},$(metric natterbox_sidecar_call_logs_accepted_total),$(metric natterbox_sidecar_pops_received_total),$(metric natterbox_sidecar_outbox_pending)" >>"$out"
}
echo "elapsed_s,fs_rss_kb,fs_threads,fs_fds,sidecar_rss_kb,sidecar_threads,sidecar_fds,fs_channels,sidecar_call_logs_accepted,sidecar_pops_received,sidecar_outbox_pending" >"$out"
start=$(date +%s)
while :; do
  sample $(($(date +%s) - start))
  kill -0 "$sipp_pid" 2>/dev/null || break
  kill -0 "$fs_pid" 2>/dev/null || die "FreeSWITCH died during the soak (SOAK_KEEP=1 keeps its log)"
  kill -0 "$sidecar_pid" 2>/dev/null || die "the sidecar died during the soak: $(tail -5 "$work/sidecar.log")"
  sleep "$every"
done
wait "$sipp_pid"
sipp_rc=$?
sipp_pid=""
# The last call logs reach Salesforce (the outbox empties), then one more sample.
for _ in $(seq 60); do [ "$(metric natterbox_sidecar_outbox_pending)" = 0 ] && break; sleep 1; done
sample $(($(date +%s) - start))

# 6. Summary: per figure, the sample after the first quarter (warm: caches and pools filled),
#    the last, min and max from warm on, and the drift from warm to last.
successful=$(grep -a 'Successful call' "$work/sipp/sipp.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
failed_calls=$(grep -a 'Failed call' "$work/sipp/sipp.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
tasks=$(curl -s "$instance_url/__emulator/records/Task" | grep -o '"CallObject"' | wc -l)
echo "soak: sipp exit $sipp_rc, calls successful ${successful:-?}, failed ${failed_calls:-?}"
echo "soak: sidecar call logs accepted $(metric natterbox_sidecar_call_logs_accepted_total), pops received $(metric natterbox_sidecar_pops_received_total), outbox pending $(metric natterbox_sidecar_outbox_pending); Tasks in the org: $tasks"
awk -F, 'NR == 1 { for (i = 2; i <= 7; i++) name[i] = $i; next }
  { rows[NR] = $0; n = NR }
  END {
    warm = int((n - 1) / 4) + 2; if (warm > n) warm = n
    split(rows[warm], w, ","); split(rows[n], l, ",")
    printf "soak: %-16s %10s %10s %10s %10s %8s\n", "figure", "warm", "last", "min", "max", "drift"
    for (i = 2; i <= 7; i++) {
      min = ""; max = ""
      for (r = warm; r <= n; r++) {
        split(rows[r], f, ","); if (f[i] == "") continue
        if (min == "" || f[i] + 0 < min) min = f[i] + 0
        if (max == "" || f[i] + 0 > max) max = f[i] + 0
      }
      drift = (w[i] > 0) ? sprintf("%+.1f%%", 100 * (l[i] - w[i]) / w[i]) : "n/a"
      printf "soak: %-16s %10s %10s %10s %10s %8s\n", name[i], w[i], l[i], min, max, drift
    }
  }' "$out"
echo "soak: samples in $out"
[ "$sipp_rc" -eq 0 ]
