#!/usr/bin/env bash
# The real-FreeSWITCH suite: mod_natterbox_sf built against an installed FreeSWITCH's headers,
# loaded by that FreeSWITCH, real SIP calls (sipp) looked up in the emulated org.
#
#   FREESWITCH_PREFIX=/opt/freeswitch tests/freeswitch/run.sh
#
# Nothing of the installed FreeSWITCH is changed: it runs from a copy of its conf dir in a
# temporary directory (-conf/-log/-db/-run/-mod/-temp/-certs… all there), on free ports, with a
# temporary module dir holding links to the installed modules plus ours. Optional environment:
#   FREESWITCH_CONF_DIR, FREESWITCH_MOD_DIR  where the installed conf and modules are, when not
#                                            $prefix/etc/freeswitch or $prefix/conf, and
#                                            $prefix/lib/freeswitch/mod or $prefix/mod
#   FS_CARGO_TARGET_DIR                      where to build, default ${CARGO_TARGET_DIR:-target}/freeswitch:
#                                            a target dir of its own, as the headers differ
#                                            from the default build's
#   FS_TEST_KEEP=1                           keep the temporary directory even when all passed
#   FS_TEST_ONLY=call_control                only the call-control checks (call_control.sh: the
#                                            real sidecar, consoles, sipp phones) after start-up
#   FS_THREE_WAY_ROUNDS=N                    repeat the three-way check on N fresh calls (default 1)
# The last line is "freeswitch: N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail

prefix="${FREESWITCH_PREFIX:-}"
if [ -z "$prefix" ]; then
  echo "freeswitch: SKIPPED (FREESWITCH_PREFIX is not set; this suite needs an installed FreeSWITCH)"
  exit 0
elif [ ! -x "$prefix/bin/freeswitch" ]; then
  echo "freeswitch: SKIPPED (FREESWITCH_PREFIX=$prefix has no bin/freeswitch)"
  exit 0
fi
prefix="$(cd "$prefix" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/freeswitch/lib.sh
. "$here/lib.sh"
fs_locate || { echo "freeswitch: $fs_error"; echo "freeswitch: 0 passed, 1 failed"; exit 1; }

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
not_ok() {
  failed=$((failed + 1)); echo "FAIL - $1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | head -20 | sed 's/^/       /'
  return 0
}
# check <description> <command…>: one test.
check() { local d="$1"; shift; if "$@"; then ok "$d"; else not_ok "$d"; return 1; fi; }
note() { echo "     # $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/natterbox-fs.XXXXXX")
fs_pid="" emu_pid="" esl_pid="" sidecar_pid=""
bg_pids=()
finish() {
  local rc=$?
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$esl_pid" ] && kill "$esl_pid" 2>/dev/null
  fs_stop
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null
  [ -n "$sidecar_pid" ] && kill "$sidecar_pid" 2>/dev/null
  if [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ] && [ -z "${FS_TEST_KEEP:-}" ]; then
    rm -rf "$work"
  elif [ -z "$summarised" ]; then
    echo "     # kept $work (freeswitch.log, emulator, sipp traces)"
  fi
}
summarised=""
trap finish EXIT
trap 'exit 130' INT TERM

summary() {
  summarised=1
  if [ "$failed" -ne 0 ] || [ -n "${FS_TEST_KEEP:-}" ]; then
    echo "     # kept $work (freeswitch.log, emulator, sipp traces)"
  fi
  echo "freeswitch: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}
abort() { not_ok "$1" "${2:-}"; summary; }

for tool in sipp curl ss; do
  command -v "$tool" >/dev/null || abort "$tool is installed (apt-get install ${tool/sipp/sip-tester})"
done

# ---------------------------------------------------------------------------------------------
# 1. Build the module against this FreeSWITCH's headers, and the emulator.
export FREESWITCH_PREFIX="$prefix"
export CARGO_TARGET_DIR="${FS_CARGO_TARGET_DIR:-${CARGO_TARGET_DIR:-$top/target}/freeswitch}"
note "building mod_natterbox_sf against $prefix/include/freeswitch and sf-emulator (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
if ! (cd "$top" && cargo build --release -p mod_natterbox_sf -p sf-emulator -p natterbox-sidecar) >"$work/build.log" 2>&1; then
  abort "cargo build --release -p mod_natterbox_sf -p sf-emulator -p natterbox-sidecar" "$(tail -20 "$work/build.log")"
fi
so="$CARGO_TARGET_DIR/release/libmod_natterbox_sf.so"
emulator_bin="$CARGO_TARGET_DIR/release/sf-emulator"
sidecar_bin="$CARGO_TARGET_DIR/release/natterbox-sidecar"
ok "module, emulator and sidecar built"

# The emulated org.
"$emulator_bin" --bind 127.0.0.1:0 >"$work/emulator.json" 2>"$work/emulator.log" &
emu_pid=$!
for _ in $(seq 100); do [ -s "$work/emulator.json" ] && break; sleep 0.1; done
login_url=$(json_str login_url <"$work/emulator.json")
instance_url=$(json_str instance_url <"$work/emulator.json")
[ -n "$instance_url" ] || abort "sf-emulator started" "$(cat "$work/emulator.json" "$work/emulator.log")"
note "emulator: login $login_url, instance $instance_url"

# The token file, written as the sidecar writes it (temporary file + rename; 0600, which the module accepts as well as the sidecar's 0640).
mkdir -p "$work/tokens" "$work/spool"
chmod 700 "$work/tokens"
write_token() {
  local generation="$1" reply token url issued tmp
  reply=$(curl -s -u '3MVG9Emu.CC.ClientId.natterbox:cc-app-secret' -d grant_type=client_credentials \
    "$instance_url/services/oauth2/token")
  token=$(json_str access_token <<<"$reply")
  url=$(json_str instance_url <<<"$reply")
  issued=$(json_num issued_at <<<"$reply")
  [ -n "$token" ] && [ -n "$url" ] || return 1
  tmp=$(mktemp "$work/tokens/.acme.json.XXXXXX")
  chmod 600 "$tmp"
  printf '{"org":"acme","access_token":"%s","instance_url":"%s","issued_at_ms":%s,"generation":%s}\n' \
    "$token" "$url" "${issued:-0}" "$generation" >"$tmp"
  mv -f "$tmp" "$work/tokens/acme.json"
  access_token="$token"
}
write_token 1 || abort "client-credentials token from the emulator"
ok "token file written ($work/tokens/acme.json, mode $(stat -c %a "$work/tokens/acme.json"))"

# ---------------------------------------------------------------------------------------------
# The FreeSWITCH: a copy of the installed conf, adapted; a module dir of links plus our module.
alloc_port && sip_port=$port && alloc_port && esl_port=$port || abort "free ports for SIP and the event socket"
note "SIP 127.0.0.1:$sip_port, event socket 127.0.0.1:$esl_port"
# The call-control checks need loopback (the transfer and three-way legs dial through the dialplan).
fs_modules="mod_console mod_logfile mod_event_socket mod_sofia mod_commands mod_dptools mod_dialplan_xml mod_loopback"
fs_prepare "$so" || abort "FreeSWITCH conf prepared" "$fs_error"

# The phones of the call-control checks (tests/freeswitch/call_control.sh): sipp as the agent's
# phone, the customer and a transfer target, each a SIP port and a media port.
alloc_port && agent_sip=$port && alloc_port && agent_media=$port &&
  alloc_port && customer_sip=$port && alloc_port && customer_media=$port &&
  alloc_port && target_sip=$port && alloc_port && target_media=$port ||
  abort "free ports for the call-control phones"
# The real sidecar's listeners (admin: /healthz; agent: the consoles' /agent WebSocket).
alloc_port && sidecar_admin=$port && alloc_port && sidecar_agent=$port ||
  abort "free ports for the sidecar"

# The module's config: the emulated org, every path in the temporary directory.
cat >"$conf/autoload_configs/natterbox_sf.conf.xml" <<EOF
<configuration name="natterbox_sf.conf" description="mod_natterbox_sf real-FreeSWITCH test">
  <settings>
    <param name="default-org" value="acme"/>
    <!-- The longest deadline any call may have (2003's); timeout_ms= only shortens it. -->
    <param name="lookup-timeout-ms" value="5000"/>
    <param name="http-connect-timeout-ms" value="1000"/>
    <param name="cache-ttl-s" value="300"/>
    <param name="cache-negative-ttl-s" value="30"/>
    <param name="runtime-threads" value="2"/>
    <param name="token-dir" value="$work/tokens"/>
    <param name="event-socket" value="$work/events.sock"/>
    <param name="spool-dir" value="$work/spool"/>
  </settings>
  <!-- The real sidecar of the call-control checks (tests/freeswitch/call_control.sh). -->
  <sidecar>
    <param name="admin-listen" value="127.0.0.1:$sidecar_admin"/>
    <param name="agent-listen" value="127.0.0.1:$sidecar_agent"/>
    <param name="outbox-db" value="$work/sidecar-state/outbox.sqlite"/>
    <param name="agent-tokens-file" value="$work/agents.json"/>
  </sidecar>
  <orgs>
    <org name="acme" api-version="68.0" default-country="US" login-url="$login_url" allow-insecure-http="true" max-concurrent="50">
      <auth flow="client-credentials" client-id="3MVG9Emu.CC.ClientId.natterbox" client-secret-env="NATTERBOX_TEST_SECRET"/>
      <profile name="default">
        <object name="Contact" fields="Id,Name,OwnerId,Owner.Name,Owner.Extension,AccountId,Account.Name">
          <map field="Owner.Extension" variable="sf_owner_extension"/>
          <map field="Account.Name" variable="sf_account_name"/>
        </object>
        <!-- Lead.Owner is polymorphic (a user or a queue): Salesforce refuses Owner.Extension
             on it in a search, and so does the emulator. -->
        <object name="Lead" fields="Id,Name,OwnerId,Company"/>
        <object name="Account" fields="Id,Name,OwnerId"/>
      </profile>
      <call-log enabled="true" subject="Call {direction} {from}" status="Completed"/>
      <screen-pop ttl-ms="30000"/>
      <!-- Click-to-dial rings the agent's phone (sipp) straight through the profile. -->
      <click-to-dial context="public" endpoint="sofia/internal/{extension}@127.0.0.1:$agent_sip"
        caller-id-number="+14155550100" answer-timeout-s="10"/>
    </org>
  </orgs>
</configuration>
EOF

# The public context (what the internal profile routes unauthenticated calls to): only ours.
cat >"$conf/dialplan/public.xml" <<'EOF'
<include>
  <context name="public">
    <!-- 2000: lookup inline (during routing), route on the answer, answer, 1 s, hang up.
         2001: the same with a 6 s call (for reload/unload with calls up).
         2002: sf_lookup executed as an ordinary (not inline) application.
         2003: a lookup with a long deadline (unload with a lookup in flight). -->
    <extension name="natterbox_sf_test">
      <condition field="destination_number" expression="^(200[013])$">
        <action application="set" data="nbx_hold_ms=${cond(${destination_number} == 2001 ? 6000 : 1000)}" inline="true"/>
        <action application="set" data="nbx_timeout=${cond(${destination_number} == 2003 ? 5000 : 800)}" inline="true"/>
        <action application="sf_lookup" data="timeout_ms=${nbx_timeout}" inline="true"/>
      </condition>
      <!-- Evaluated during routing: sees the inline lookup's answer. -->
      <condition field="${sf_lookup_status}" expression="^found$" break="never">
        <action application="set" data="nbx_route=owner-${sf_owner_extension}"/>
        <anti-action application="set" data="nbx_route=fallback"/>
      </condition>
      <condition field="destination_number" expression="^(200[013])$">
        <action application="log" data="NOTICE NBX-SF call=${sip_call_id} uuid=${uuid} caller=${caller_id_number} status=${sf_lookup_status} name=${sf_record_name} ext=${sf_owner_extension} source=${sf_lookup_source} ms=${sf_lookup_ms} count=${sf_match_count} route=${nbx_route}"/>
        <action application="answer"/>
        <action application="sleep" data="${nbx_hold_ms}"/>
        <action application="hangup"/>
      </condition>
    </extension>
    <!-- 2004: route to the owner: pop the record on the owner's console, then answer. -->
    <extension name="natterbox_sf_test_pop">
      <condition field="destination_number" expression="^2004$">
        <action application="sf_lookup" data="timeout_ms=800" inline="true"/>
      </condition>
      <condition field="${sf_owner_extension}" expression="^(\d+)$">
        <action application="sf_screen_pop" data="direction=inbound extension=$1"/>
        <action application="log" data="NOTICE NBX-SF call=${sip_call_id} uuid=${uuid} caller=${caller_id_number} status=${sf_lookup_status} name=${sf_record_name} ext=${sf_owner_extension} source=${sf_lookup_source} ms=${sf_lookup_ms} count=${sf_match_count} pop=${sf_screen_pop}"/>
        <action application="answer"/>
        <action application="sleep" data="1000"/>
        <action application="hangup"/>
      </condition>
    </extension>
    <extension name="natterbox_sf_test_not_inline">
      <condition field="destination_number" expression="^2002$">
        <action application="sf_lookup" data="timeout_ms=800"/>
        <action application="log" data="NOTICE NBX-SF call=${sip_call_id} uuid=${uuid} caller=${caller_id_number} status=${sf_lookup_status} name=${sf_record_name} ext=${sf_owner_extension} source=${sf_lookup_source} ms=${sf_lookup_ms} count=${sf_match_count} route=not-inline"/>
        <action application="answer"/>
        <action application="sleep" data="1000"/>
        <action application="hangup"/>
      </condition>
    </extension>
  </context>
</include>
EOF

# 3001: the customer a click-to-dial reaches; 3002: the target of a blind transfer (both sipp).
sed -i 's#^  </context>#    <extension name="natterbox_sf_test_customer">\
      <condition field="destination_number" expression="^3001$">\
        <action application="bridge" data="sofia/internal/3001@127.0.0.1:'"$customer_sip"'"/>\
      </condition>\
    </extension>\
    <extension name="natterbox_sf_test_transfer_target">\
      <condition field="destination_number" expression="^3002$">\
        <action application="bridge" data="sofia/internal/3002@127.0.0.1:'"$target_sip"'"/>\
      </condition>\
    </extension>\
  </context>#' "$conf/dialplan/public.xml"

note "starting $fs_bin -nc -nonat -conf $conf …"
fs_start || abort "FreeSWITCH started and its event socket answers on 127.0.0.1:$esl_port" "$fs_error"
ok "FreeSWITCH $("$fs_bin" -version | awk '{print $3}') up (pid $fs_pid), event socket answers"

check "mod_natterbox_sf loaded at startup (modules.conf.xml)" grep -q 'mod_natterbox_sf loaded: 1 org(s), headers from FREESWITCH_PREFIX' "$fs_log"
note "$(grep -o 'mod_natterbox_sf loaded: .*' "$fs_log" | head -1)"
check "module_exists mod_natterbox_sf" test "$(fscli module_exists mod_natterbox_sf)" = true
# show application/api read the core DB, which FreeSWITCH fills asynchronously after a load.
for _ in $(seq 50); do
  [ "$(fscli 'show application' | grep -cE '^sf_(lookup|screen_pop),')" -eq 2 ] && break; sleep 0.2
done
apps=$(fscli 'show application')
check "sf_lookup and sf_screen_pop are registered applications" \
  test "$(grep -cE '^sf_(lookup|screen_pop),' <<<"$apps")" -eq 2 || note "$(grep -E 'sf_|rows' <<<"$apps")"
api=$(fscli 'show api')
check "the sf API is registered" grep -q '^sf,' <<<"$api" || note "$(grep -E '^sf|rows' <<<"$api")"
grep -q 'sip-port.*'"$sip_port" <(fscli 'sofia status profile internal') ||
  for _ in $(seq 50); do fscli 'sofia status' | grep -q "internal.*RUNNING" && break; sleep 0.2; done

# The module's CUSTOM events, through the event socket (bash /dev/tcp: no client needed).
if exec 5<>"/dev/tcp/127.0.0.1/$esl_port"; then
  printf 'auth ClueCon\n\nevent plain CUSTOM natterbox_sf::lookup\n\n' >&5
  cat <&5 >"$work/events.txt" &
  esl_pid=$!
  exec 5>&-
fi

if [ "${FS_TEST_ONLY:-}" = call_control ]; then
  # shellcheck source=tests/freeswitch/call_control.sh
  . "$here/call_control.sh"
  summary
fi

# ---------------------------------------------------------------------------------------------
# 3. Real SIP calls.
# place_call <tag> <caller> <destination> [sip port] [media port]: one call, blocking; the sipp
# exit status. bg_call <pid variable> <tag> <caller> <destination>: the same in the background.
place_call() {
  local tag="$1" caller="$2" dest="$3" mp sp
  sp="${4:-}" mp="${5:-}"
  [ -n "$sp" ] || { alloc_port; sp=$port; }
  [ -n "$mp" ] || { alloc_port; mp=$port; }
  printf 'SEQUENTIAL\n%s;%s;\n' "$caller" "$tag" >"$work/sipp/$tag.csv"
  (cd "$work/sipp" && timeout 60 sipp "127.0.0.1:$sip_port" -sf "$here/uac_caller.xml" \
    -inf "$work/sipp/$tag.csv" -s "$dest" -m 1 -i 127.0.0.1 -p "$sp" -mp "$mp" -nostdin \
    -cid_str "nbx-$tag-%u-%p@%s" -timeout 40s -timeout_error -recv_timeout 15000 \
    -trace_err -error_file "$work/sipp/$tag.err" -trace_msg -message_file "$work/sipp/$tag.msg" \
    >"$work/sipp/$tag.out" 2>&1)
}
bg_call() {
  local sp mp
  alloc_port; sp=$port; alloc_port; mp=$port
  place_call "$2" "$3" "$4" "$sp" "$mp" &
  printf -v "$1" '%s' "$!"
  bg_pids+=("$!")
}
# The dialplan's NBX-SF line of a call.
nbx_line() { grep -a "\[NOTICE\] mod_dptools.c:[0-9]* NBX-SF call=nbx-$1-" "$fs_log" | tail -1; }
field() { sed -n 's/.* '"$1"'=\([^ ]*\).*/\1/p' <<<"$2"; }
wait_nbx() { for _ in $(seq 100); do [ -n "$(nbx_line "$1")" ] && return 0; sleep 0.1; done; return 1; }

# expect_call <tag> <caller> <dest> <status> <name> <ext> <source> [route]
expect_call() {
  local tag="$1" caller="$2" dest="$3" status="$4" name="$5" ext="$6" source="$7" route="${8:-}"
  local rc line uuid
  place_call "$tag" "$caller" "$dest"; rc=$?
  line=$(nbx_line "$tag")
  if [ "$rc" -ne 0 ]; then
    not_ok "call $tag ($caller → $dest): sipp completed it (exit $rc)" "$(tail -5 "$work/sipp/$tag.out"; cat "$work/sipp/$tag.err" 2>/dev/null)"
  else
    ok "call $tag ($caller → $dest): answered by the dialplan, hung up by the switch (sipp exit 0)"
  fi
  local want="status=$status name=$name ext=$ext source=$source"
  local got="status=$(field status "$line") name=$(sed -n 's/.* name=\(.*\) ext=.*/\1/p' <<<"$line") ext=$(field ext "$line") source=$(field source "$line")"
  if [ "$got" = "$want" ]; then ok "call $tag: $want"; else not_ok "call $tag: $want" "got: ${line:-no NBX-SF line}"; fi
  if [ -n "$route" ]; then
    check "call $tag: the routing-time condition saw the inline answer (route=$route)" test "$(field route "$line")" = "$route"
  fi
  uuid=$(field uuid "$line")
  eval "uuid_$tag=\$uuid"
  note "FreeSWITCH: $(sed 's/^.*\(NBX-SF\)/\1/' <<<"$line")"
  local modline
  modline=$(grep -a "^$uuid .*sf_lookup org=" "$fs_log" | tail -1)
  [ -n "$modline" ] && note "module:     $(sed 's/^.*\(sf_lookup org=\)/\1/' <<<"$modline")"
}

expect_call found "+14155550123" 2000 found "Ada Lovelace" 1001 salesforce owner-1001
expect_call multiple "+442079460958" 2000 multiple "" "" salesforce fallback
expect_call notfound "+14155550999" 2000 not_found "" "" salesforce fallback
expect_call national "4155550123" 2000 found "Ada Lovelace" 1001 cache owner-1001
expect_call notinline "+14155550123" 2002 found "Ada Lovelace" 1001 cache
# Caller ids that are not numbers never reach Salesforce.
searches_before=$(curl -s "$instance_url/__emulator/stats" | tr -d ' \n' | grep -o '"search":[0-9]*' | head -1)
expect_call anonymous "anonymous" 2000 invalid_number "" "" "" fallback
expect_call quote "4155550123'OR'1'='1" 2000 invalid_number "" "" "" fallback
searches_after=$(curl -s "$instance_url/__emulator/stats" | tr -d ' \n' | grep -o '"search":[0-9]*' | head -1)
check "… and made no search request (${searches_before:-?} → ${searches_after:-?})" test "$searches_before" = "$searches_after"

# 4. sf_lookup never answers the call: nothing but 100 Trying before the dialplan's answer (the
# sipp scenario fails a call on any 18x), and the switch answered only after the lookup ran.
early=$(grep -l 'SIP/2.0 18[0-9]' "$work"/sipp/*.msg 2>/dev/null)
check "no 180/183 sent to any caller (the lookup neither rang nor pre-answered the call)" test -z "$early"
# In the log: the module's lookup line, then the dialplan's answer() starting, and only then
# the switch's first pre-answer / ring-ready / early state (answering passes through
# pre-answer: sofia logs "Pre-Answer" from inside answer()).
line_of() { grep -anE "^$1 .*($2)" "$fs_log" | head -1 | cut -d: -f1; }
order_ok() {
  local uuid="$1" lookup_at answer_app_at early_at answered_at
  lookup_at=$(line_of "$uuid" 'sf_lookup org=')
  answer_app_at=$(line_of "$uuid" 'EXECUTE \[depth=0\] .* answer\(\)')
  early_at=$(line_of "$uuid" 'Pre-Answer|Ring-Ready|RINGING -> EARLY|-> ACTIVE')
  answered_at=$(line_of "$uuid" 'has been answered')
  note "log lines of ${uuid:0:8}: lookup $lookup_at, answer() $answer_app_at, first pre-answer/early $early_at, answered $answered_at"
  [ -n "$lookup_at" ] && [ -n "$answer_app_at" ] && [ -n "$early_at" ] && [ -n "$answered_at" ] &&
    [ "$lookup_at" -lt "$answer_app_at" ] && [ "$answer_app_at" -lt "$early_at" ] && [ "$early_at" -le "$answered_at" ]
}
# shellcheck disable=SC2154
check "found call: lookup, then answer(), then the first pre-answer/early media and 'has been answered'" order_ok "$uuid_found"
# shellcheck disable=SC2154
check "not-inline call: lookup, then answer(), then the first pre-answer/early media" order_ok "$uuid_notinline"

# The API, from fs_cli.
# has <json> <"key":value>…: every fragment is in the JSON (whitespace removed).
has() {
  local flat; flat=$(tr -d ' \n' <<<"$1"); shift
  for f in "$@"; do [[ "$flat" == *"$f"* ]] || return 1; done
}
status_json=$(fscli 'sf status')
echo "$status_json" >"$work/sf-status.json"
if command -v jq >/dev/null; then
  check "sf status: JSON, org acme, a token, breaker closed" \
    jq -e '.orgs[0].org == "acme" and .orgs[0].token.generation == 1 and .orgs[0].breaker == "closed"' \
    >/dev/null <<<"$status_json" || note "$status_json"
else
  check "sf status: JSON, org acme, a token, breaker closed" \
    has "$status_json" '"org":"acme"' '"generation":1' '"breaker":"closed"' || note "$status_json"
fi
note "sf status: $(tr -d ' \n' <<<"$status_json" | cut -c1-400)…"
lookup_json=$(fscli 'sf lookup acme +14155550123')
check "sf lookup acme +14155550123: found, from the cache, sf_owner_extension 1001" \
  has "$lookup_json" '"status":"found"' '"source":"cache"' '"sf_owner_extension":"1001"' || note "$lookup_json"
check "sf (no arguments): usage" grep -q '^USAGE: sf status' <<<"$(fscli sf)"

# reloadxml: the module re-reads its config through FreeSWITCH's XML API.
before=$(grep -ac 'config reloaded (reloadxml)' "$fs_log")
reload_out=$(fscli reloadxml)
for _ in $(seq 50); do [ "$(grep -ac 'config reloaded (reloadxml)' "$fs_log")" -gt "$before" ] && break; sleep 0.1; done
check "reloadxml: +OK and the module reloaded its config" test "$(grep -ac 'config reloaded (reloadxml)' "$fs_log")" -gt "$before"
note "reloadxml: $reload_out; $(grep -ao 'mod_natterbox_sf: config reloaded (reloadxml).*' "$fs_log" | tail -1)"
check "sf reload: +OK" grep -q '^+OK reloaded' <<<"$(fscli 'sf reload')"
# An invalid config: logged, the running one stays.
cp "$conf/autoload_configs/natterbox_sf.conf.xml" "$work/natterbox_sf.conf.good"
sed -i 's/name="lookup-timeout-ms" value="5000"/name="lookup-timeout-ms" value="soon"/' "$conf/autoload_configs/natterbox_sf.conf.xml"
before=$(grep -ac 'config not reloaded (reloadxml)' "$fs_log")
fscli reloadxml >/dev/null
for _ in $(seq 50); do [ "$(grep -ac 'config not reloaded (reloadxml)' "$fs_log")" -gt "$before" ] && break; sleep 0.1; done
check "reloadxml with an invalid natterbox_sf.conf: refused, logged" \
  test "$(grep -ac 'config not reloaded (reloadxml)' "$fs_log")" -gt "$before"
note "$(grep -ao 'mod_natterbox_sf: config not reloaded (reloadxml).*' "$fs_log" | tail -1)"
check "… and the running config still answers (sf lookup: found)" \
  grep -q '"status": "found"' <<<"$(fscli 'sf lookup acme +14155550123')"
cp "$work/natterbox_sf.conf.good" "$conf/autoload_configs/natterbox_sf.conf.xml"
fscli reloadxml >/dev/null

# Values from Salesforce as they come: UTF-8 passes; a value with a variable expansion is never
# set (the switch would expand it wherever the variable is used: ${system(...)} runs a command).
create_contact() {
  curl -s -H "Authorization: Bearer $access_token" -H 'Content-Type: application/json' \
    -d "$1" "$instance_url/services/data/v68.0/sobjects/Contact"
}
create_contact '{"FirstName":"Zoë","LastName":"Ångström-Ðuric","Phone":"+1 415 555 0166"}' >"$work/contact-utf8.json"
create_contact '{"FirstName":"Mallory","LastName":"${system(touch '"$work"'/pwned)}","Phone":"+1 415 555 0167"}' >"$work/contact-evil.json"
check "two Contacts created in the org" grep -q '"success":true' "$work/contact-evil.json"
expect_call utf8 "+14155550166" 2000 found "Zoë Ångström-Ðuric" "" salesforce owner-
expect_call evil "+14155550167" 2000 found "" "" salesforce owner-
sleep 0.5
check "the variable-expansion name was not set: the module says so, nothing ran" \
  test ! -e "$work/pwned" -a -n "$(grep -a "^$uuid_evil .*not setting sf_record_name" "$fs_log")"
note "$(grep -a "^$uuid_evil .*not setting sf_record_name" "$fs_log" | sed 's/^.*\] //' | head -1)"

# A deadline on the real switch: Salesforce slower than timeout_ms.
fault=$(curl -s -X POST -H 'Content-Type: application/json' \
  -d '{"path_prefix":"/services/data","latency_ms":3000}' "$instance_url/__emulator/faults")
fault_id=$(json_num id <<<"$fault")
start_ms=$(date +%s%3N)
expect_call slow "+14155550188" 2000 timeout "" "" "" fallback
elapsed=$(( $(date +%s%3N) - start_ms ))
slow_ms=$(field ms "$(nbx_line slow)")
check "timeout: sf_lookup returned by its 800 ms deadline (sf_lookup_ms=$slow_ms)" \
  test -n "$slow_ms" -a "${slow_ms:-0}" -ge 700 -a "${slow_ms:-0}" -le 1300
note "the whole slow call took ${elapsed} ms (1 s of it in the dialplan)"
curl -s -X DELETE "$instance_url/__emulator/faults" >/dev/null

# Reload, unload and load with calls up (each long call sleeps 6 s after its lookup).
last_line_ok() { [ "$(tail -1 <<<"$1")" = "+OK" ] || grep -q '^+OK module loaded$' <<<"$1"; }
bg_call long1_pid long1 "+14155550123" 2001
wait_nbx long1 || true
reload_out=$(fscli 'reload mod_natterbox_sf')
note "reload mod_natterbox_sf with a call up: $(tr '\n' ' ' <<<"$reload_out")"
check "reload mod_natterbox_sf with a call up: +OK module unloaded, +OK module loaded" \
  grep -q '^+OK module loaded' <<<"$reload_out"
check "FreeSWITCH alive after reload" kill -0 "$fs_pid"
# The reloaded module starts from nothing: its cache is empty.
expect_call afterreload "+442079460958" 2000 multiple "" "" salesforce fallback

bg_call long2_pid long2 "+14155550123" 2001
wait_nbx long2 || true
unload_out=$(fscli 'unload mod_natterbox_sf')
note "unload mod_natterbox_sf with a call up: $(tr '\n' ' ' <<<"$unload_out")"
check "unload mod_natterbox_sf with a call up (not in the module): +OK" last_line_ok "$unload_out"
sf_out=$(fscli 'sf status')
check "after unload: the sf API is gone ($(head -1 <<<"$sf_out"))" grep -q '^-ERR' <<<"$sf_out"
# A call while the module is out: the dialplan names an application nobody provides.
place_call unloaded "+14155550123" 2000; rc=$?
u=$(grep -a 'call-id: nbx-unloaded-' "$fs_log" | head -1 | cut -d' ' -f1)
invalid=$(grep -a "^$u .*Invalid Application sf_lookup" "$fs_log" | sed 's/^.*\] //')
hangup=$(grep -a "^$u .*Hangup .*CS_ROUTING" "$fs_log" | sed 's/^.*Hangup //')
final=$(grep -a '^SIP/2.0 [3-6]' "$work/sipp/unloaded.msg" 2>/dev/null | head -1)
note "call while unloaded: sipp exit $rc; FreeSWITCH: $invalid; hangup $hangup; caller got: $final"
check "a call during the unload window fails in routing (Invalid Application sf_lookup)" \
  test "$rc" -ne 0 -a -n "$invalid"
load_out=$(fscli 'load mod_natterbox_sf')
note "load mod_natterbox_sf: $(tr '\n' ' ' <<<"$load_out")"
check "load mod_natterbox_sf again: +OK" last_line_ok "$load_out"
expect_call afterload "+14155550123" 2000 found "Ada Lovelace" 1001 salesforce owner-1001

wait "$long1_pid"; rc1=$?
wait "$long2_pid"; rc2=$?
bg_pids=()
check "long call 1 (up through reload) ended normally (sipp exit $rc1)" test "$rc1" -eq 0
check "long call 2 (up through unload/load) ended normally (sipp exit $rc2)" test "$rc2" -eq 0
# shellcheck disable=SC2154
for t in long1 long2; do
  u=$(field uuid "$(nbx_line $t)")
  hc=$(grep -a "^$u .*Hangup .*\[CS_EXECUTE\]" "$fs_log" | sed 's/^.*\] \[//; s/\]$//' | tail -1)
  note "$t ($u): hangup cause ${hc:-?}, call log spooled: $(ls "$work/spool" | grep -c "^$u")"
done

# Unload while a lookup is in flight (Salesforce answers in 3 s, the call's deadline is 5 s).
curl -s -X POST -H 'Content-Type: application/json' \
  -d '{"path_prefix":"/services/data","latency_ms":3000}' "$instance_url/__emulator/faults" >/dev/null
bg_call inflight_pid inflight "+14155550177" 2003
for _ in $(seq 50); do grep -aq 'call-id: nbx-inflight-' "$fs_log" && break; sleep 0.1; done
sleep 1
t0=$(date +%s%3N)
unload_out=$(fscli 'unload mod_natterbox_sf')
t1=$(date +%s%3N)
note "unload with a lookup in flight: $(tr '\n' ' ' <<<"$unload_out")after $((t1 - t0)) ms; log: $(grep -ao 'Module mod_natterbox_sf is in use, cannot unload.' "$fs_log" | tail -1)"
check "unload with a lookup in flight: refused by FreeSWITCH (-ERR Module in use), nothing blocks" \
  grep -q 'in use' <<<"$unload_out"
reload_out=$(fscli 'reload mod_natterbox_sf')
note "reload with a lookup in flight: $(tr '\n' ' ' <<<"$reload_out")"
check "reload with a lookup in flight: refused too, the module stays loaded" \
  test "$(fscli module_exists mod_natterbox_sf)" = true -a -n "$(grep 'in use' <<<"$reload_out")"
wait "$inflight_pid"; rc=$?
bg_pids=()
line=$(nbx_line inflight)
note "the in-flight call: sipp exit $rc; FreeSWITCH: $(sed 's/^.*\(NBX-SF\)/\1/' <<<"$line")"
check "the in-flight lookup completed normally (not_found from Salesforce after ~3 s)" \
  test "$rc" -eq 0 -a "$(field status "$line")" = not_found
check "FreeSWITCH alive after unload with a lookup in flight" kill -0 "$fs_pid"

# The caller gives up (CANCEL at 0.7 s) while the lookup waits for Salesforce (3 s).
printf 'SEQUENTIAL\n%s;%s;\n' "+14155550155" cancel >"$work/sipp/cancel.csv"
alloc_port; csp=$port; alloc_port; cmp=$port
t0=$(date +%s%3N)
(cd "$work/sipp" && timeout 60 sipp "127.0.0.1:$sip_port" -sf "$here/uac_cancel.xml" -inf "$work/sipp/cancel.csv" \
  -s 2003 -m 1 -i 127.0.0.1 -p "$csp" -mp "$cmp" -nostdin -cid_str "nbx-cancel-%u-%p@%s" \
  -timeout 40s -timeout_error -recv_timeout 15000 -trace_err -error_file "$work/sipp/cancel.err" \
  -trace_msg -message_file "$work/sipp/cancel.msg" >"$work/sipp/cancel.out" 2>&1); rc=$?
t1=$(date +%s%3N)
u=$(grep -a 'call-id: nbx-cancel-' "$fs_log" | head -1 | cut -d' ' -f1)
for _ in $(seq 80); do grep -aq "^$u .*sf_lookup org=" "$fs_log" && break; sleep 0.1; done
line=$(grep -a "^$u .*sf_lookup org=" "$fs_log" | sed 's/^.*\(sf_lookup org=\)/\1/' | tail -1)
hangup=$(grep -a "^$u .*Hangup .*ORIGINATOR_CANCEL" "$fs_log" | sed 's/^[^ ]* [^ ]* \([^ ]*\) .*Hangup .*/\1/' | head -1)
looked=$(grep -a "^$u .*sf_lookup org=" "$fs_log" | sed 's/^[^ ]* [^ ]* \([^ ]*\) .*/\1/' | head -1)
note "caller CANCELs at 0.7 s during the lookup: sipp done (200 CANCEL, 487) after $((t1 - t0)) ms; module at $looked: $line; the switch's Hangup [ORIGINATOR_CANCEL] at $hangup (the session thread handles the CANCEL once the app returns)"
check "CANCEL during the lookup: 200 for the CANCEL, 487 for the INVITE" test "$rc" -eq 0
for _ in $(seq 50); do ls "$work/spool/$u".* >/dev/null 2>&1 && break; sleep 0.1; done
cancel_log=$(cat "$work/spool/$u".*json 2>/dev/null)
check "the cancelled call's call log: never answered (answer_ms null), ORIGINATOR_CANCEL" \
  grep -q '"answer_ms":null.*"hangup_cause":"ORIGINATOR_CANCEL"' <<<"$cancel_log"
[ -n "$cancel_log" ] && note "call log: $cancel_log"
curl -s -X DELETE "$instance_url/__emulator/faults" >/dev/null
unload_out=$(fscli 'unload mod_natterbox_sf')
check "unload once the lookup is done: +OK" last_line_ok "$unload_out"
check "load mod_natterbox_sf after that: +OK" last_line_ok "$(fscli 'load mod_natterbox_sf')"
expect_call final "+14155550123" 2000 found "Ada Lovelace" 1001 salesforce owner-1001

# A burst of concurrent calls: 30 calls at 10 a second, six callers.
printf 'SEQUENTIAL\n' >"$work/sipp/burst.csv"
for i in $(seq 5); do
  printf '%s;b;\n' +14155550123 +442079460958 +14155550999 +14155550199 +35315550142 +390669821234 >>"$work/sipp/burst.csv"
done
alloc_port; bsp=$port; alloc_port; bmp=$port
(cd "$work/sipp" && timeout 120 sipp "127.0.0.1:$sip_port" -sf "$here/uac_caller.xml" -inf "$work/sipp/burst.csv" \
  -s 2000 -m 30 -r 10 -l 30 -i 127.0.0.1 -p "$bsp" -mp "$bmp" -nostdin -cid_str "nbx-burst-%u-%p@%s" \
  -timeout 100s -timeout_error -recv_timeout 15000 -trace_err -error_file "$work/sipp/burst.err" \
  >"$work/sipp/burst.out" 2>&1); rc=$?
burst=$(grep -a '\[NOTICE\] mod_dptools.c:[0-9]* NBX-SF call=nbx-burst-' "$fs_log")
check "burst: sipp completed all 30 concurrent calls (exit $rc)" test "$rc" -eq 0
statuses=$(sed -n 's/.* status=\([^ ]*\).*/\1/p' <<<"$burst" | sort | uniq -c | tr -s ' ' | tr '\n' ',')
check "burst: 30 lookups, every one found/multiple/not_found ($statuses)" \
  test "$(grep -cE 'status=(found|multiple|not_found) ' <<<"$burst")" -eq 30
ms_list=$(sed -n 's/.* ms=\([0-9]*\) .*/\1/p' <<<"$burst" | sort -n)
note "burst sf_lookup_ms: min $(head -1 <<<"$ms_list"), median $(sed -n 15p <<<"$ms_list"), max $(tail -1 <<<"$ms_list"); sources: $(sed -n 's/.* source=\([^ ]*\).*/\1/p' <<<"$burst" | sort | uniq -c | tr -s ' ' | tr '\n' ',')"

# The CUSTOM events seen on the event socket.
sleep 0.5
if [ -n "$esl_pid" ]; then
  events_found=$(grep -ac '^SF-Status: found' "$work/events.txt")
  check "natterbox_sf::lookup CUSTOM events on the event socket (found: $events_found)" test "$events_found" -ge 5
  for s in multiple not_found timeout; do
    check "… and one with SF-Status: $s" grep -aq "^SF-Status: $s" "$work/events.txt"
  done
  # shellcheck disable=SC2154
  found_event=$(awk -v RS= -v u="Unique-ID: $uuid_found" 'index($0, u)' "$work/events.txt")
  check "the found call's event: its Unique-ID, SF-Status found, SF-Source salesforce, the record id" \
    has "$found_event" 'SF-Status:found' 'SF-Source:salesforce' 'SF-Record-ID:003'
  note "event: $(grep -a '^SF-' <<<"$found_event" | tr '\n' ' ')"
  note "events received: $(grep -ac '^Event-Subclass: natterbox_sf%3A%3Alookup' "$work/events.txt")"
fi

# Call logs at hangup (CHANNEL_HANGUP_COMPLETE): spooled, no sidecar to take them.
spooled=$(find "$work/spool" -name '*.json' | wc -l)
check "call logs spooled at hangup ($spooled files)" test "$spooled" -ge 10
# shellcheck disable=SC2154
found_log=$(cat "$work/spool/$uuid_found".*json 2>/dev/null)
check "the found call's call log: from +14155550123, to 2000, answered, NORMAL_CLEARING, who_id a Contact" \
  grep -q '"from":"+14155550123","to":"2000","direction":"inbound".*"answer_ms":[0-9].*"who_id":"003.*"hangup_cause":"NORMAL_CLEARING"' <<<"$found_log"
note "call log file: $(ls "$work/spool" | head -1)"

# Threads and mappings across unload/load/reload, with no call up: the module's threads go
# with it; loading it again does not add more.
threads() { ls "/proc/$fs_pid/task" 2>/dev/null | wc -l; }
settle() { sleep 1.5; }
settle; t_loaded=$(threads)
fscli 'unload mod_natterbox_sf' >/dev/null; settle; t_unloaded=$(threads)
mapped=$(grep -c 'mod_natterbox_sf.so' "/proc/$fs_pid/maps")
fscli 'load mod_natterbox_sf' >/dev/null
for _ in 1 2 3; do fscli 'reload mod_natterbox_sf' >/dev/null; done
fscli 'sf lookup acme +14155550123' >/dev/null
settle; t_reloaded=$(threads)
note "FreeSWITCH threads: $t_loaded loaded, $t_unloaded unloaded (mod_natterbox_sf.so mappings left after unload: $mapped), $t_reloaded after load + 3 reloads"
check "unload stops the module's threads ($t_loaded → $t_unloaded)" test "$t_unloaded" -lt "$t_loaded"
check "load + 3 reloads leave no extra threads ($t_loaded → $t_reloaded)" test "$t_reloaded" -le $((t_loaded + 1))
check "the module answers after the reloads" grep -q '"status": "found"' <<<"$(fscli 'sf lookup acme +14155550123')"

# The sidecar comes (a stand-in on the event socket): the module connects, sends every spooled
# call log and deletes each on its ack; a screen pop from the dialplan reaches it.
if command -v python3 >/dev/null; then
  python3 "$here/sidecar_standin.py" "$work/events.sock" "$work/sidecar.jsonl" "$instance_url" "$work/tokens" acme \
    "$work/control.sock" >"$work/sidecar.log" 2>&1 &
  sidecar_pid=$!
  for _ in $(seq 150); do
    [ "$(find "$work/spool" -name '*.json' | wc -l)" -eq 0 ] && break; sleep 0.1
  done
  acked=$(grep -c '"type":"call_log"' "$work/sidecar.jsonl" 2>/dev/null)
  check "sidecar up: the spooled call logs were sent ($acked) and deleted on ack" \
    test "$(find "$work/spool" -name '*.json' | wc -l)" -eq 0 -a "${acked:-0}" -ge "$spooled"
  expect_call pop "+14155550123" 2004 found "Ada Lovelace" 1001 cache
  check "sf_screen_pop in the dialplan: sf_screen_pop=sent" grep -q ' pop=sent$' <<<"$(nbx_line pop)"
  # shellcheck disable=SC2154
  for _ in $(seq 50); do grep -q '"type":"screen_pop".*'"$uuid_pop" "$work/sidecar.jsonl" && break; sleep 0.1; done
  pop=$(grep '"type":"screen_pop"' "$work/sidecar.jsonl" | grep "$uuid_pop")
  check "the screen pop reached the sidecar: agent extension 1001, the Contact's id, the caller" \
    grep -q '"agent_extension":"1001".*"caller_number":"+14155550123","record_ids":\["003' <<<"$pop"
  note "screen pop: $pop"
  for _ in $(seq 50); do grep -q '"type":"call_log".*'"$uuid_pop" "$work/sidecar.jsonl" && break; sleep 0.1; done
  check "the pop call's call log went straight to the sidecar" grep -q '"type":"call_log".*'"$uuid_pop" "$work/sidecar.jsonl"
  # Salesforce ends the session: the module reports the token, the sidecar writes a new one, and
  # the call still gets its answer within its 800 ms deadline.
  expired=$(curl -s -X POST "$instance_url/__emulator/sessions/expire")
  fscli 'sf cache flush acme' >/dev/null
  expect_call expired "+442079460958" 2000 multiple "" "" salesforce fallback
  check "a token_refresh report of generation 1 reached the sidecar" \
    grep -q '"type":"token_refresh","org":"acme","generation":1' "$work/sidecar.jsonl"
  gen=$(fscli 'sf status' | tr -d ' \n' | grep -o '"generation":[0-9]*' | head -1)
  check "the module swapped in the new token file ($gen)" test "$gen" = '"generation":2'
  note "sessions expired: $expired; $(grep -ao 'sf_lookup org=acme number=+442079460958 status=multiple source=salesforce ms=[0-9]*' "$fs_log" | tail -1)"
  # Call control on real SIP calls: click-to-dial, hold, mute, blind transfer, hang-up.
  # shellcheck source=tests/freeswitch/call_control.sh
  . "$here/call_control.sh"
else
  note "no python3: the sidecar stand-in checks are left out"
fi

# ---------------------------------------------------------------------------------------------
# 5. Stop, with a call up and a module that was reloaded and unloaded/loaded: a clean shutdown.
bg_call atstop_pid atstop "+14155550123" 2001
wait_nbx atstop || true
# … and a lookup in flight (Salesforce answers in 3 s, the call's deadline is 5 s).
curl -s -X POST -H 'Content-Type: application/json' \
  -d '{"path_prefix":"/services/data","latency_ms":3000}' "$instance_url/__emulator/faults" >/dev/null
bg_call stopinflight_pid stopinflight "+14155550144" 2003
for _ in $(seq 50); do grep -aq 'call-id: nbx-stopinflight-' "$fs_log" && break; sleep 0.1; done
sleep 1
t0=$(date +%s%3N)
check "FreeSWITCH still running before shutdown (no crash)" kill -0 "$fs_pid"
"$fs_bin" -stop -run "$work/run" >"$work/fs-stop.log" 2>&1
stopped=""
for _ in $(seq 150); do kill -0 "$fs_pid" 2>/dev/null || { stopped=1; break; }; sleep 0.2; done
t1=$(date +%s%3N)
check "FreeSWITCH stopped within 30 s of -stop with a call up and a lookup in flight ($((t1 - t0)) ms)" test -n "$stopped"
[ -n "$stopped" ] && fs_pid=""
wait "$atstop_pid"; rc=$?
wait "$stopinflight_pid"; rc2=$?
bg_pids=()
note "the call up at shutdown: sipp exit $rc (the switch hung it up: $(grep -a '^BYE' "$work/sipp/atstop.msg" | head -1 | cut -c1-40))"
note "the call with a lookup in flight at shutdown: sipp exit $rc2; it got: $(grep -a '^SIP/2.0 [2-6]' "$work/sipp/stopinflight.msg" | tr -d '\r' | tr '\n' ' ')"
# FreeSWITCH removes its pid file at the end of a clean shutdown (not after a crash).
check "clean exit: FreeSWITCH removed its pid file" test ! -e "$work/run/freeswitch.pid"
check "the module's last stop (unload) was clean" grep -aq 'mod_natterbox_sf stopped' "$fs_log"
crash=$(grep -aiE 'segmentation|SIGSEGV|SIGABRT|panicked|core dumped|double free|refusing to be unloaded|\[CRIT\]' "$fs_log" | head -5)
check "no crash, panic, CRIT or refused unload in freeswitch.log" test -z "$crash"
[ -n "$crash" ] && note "$crash"
note "last lines of freeswitch.log: $(tail -3 "$fs_log" | sed 's/^.*\] //' | tr '\n' '|')"
kill "$emu_pid" 2>/dev/null; wait "$emu_pid" 2>/dev/null; emu_pid=""

summary
