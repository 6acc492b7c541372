#!/usr/bin/env bash
# The demo: the whole product against the org emulator, on this machine.
#   1. an emulated Salesforce org (tests/sf-emulator) on a free loopback port;
#   2. the sidecar, which gets an access token by the JWT bearer flow and hands it over;
#   3. the real mod_natterbox_sf.so loaded into the host shim (FreeSWITCH's module loader and
#      core functions, tests/host-shim), taking simulated inbound calls through sf_lookup,
#      sf_screen_pop and hangup, exactly as a dialplan would run them;
#   4. the call log arriving in the org as a Task;
#   5. the agent's console in headless chromium (tests/browser/demo.js): the pop on screen, the
#      call controls, wrap-up, click-to-dial and the Open CTI softphone, as PNGs in demo-output/.
# Nothing leaves the machine. With a real org, the same config points at login.salesforce.com.
# With FREESWITCH_PREFIX pointing at an installed FreeSWITCH, it then runs tests/freeswitch/run.sh:
# the module in that FreeSWITCH, taking real SIP calls from sipp.
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"
"$top/scripts/install-deps.sh" >/dev/null

echo "== building (debug)"
cargo build --quiet -p mod_natterbox_sf -p natterbox-sidecar -p sf-emulator
target="${CARGO_TARGET_DIR:-$top/target}/debug"
shim="$(ls -t "$target"/build/mod_natterbox_sf-*/out/host-shim 2>/dev/null | head -1)"
[ -x "$shim" ] || { echo "host shim not built" >&2; exit 1; }

work="$(mktemp -d /tmp/natterbox-demo.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/conf/autoload_configs" "$work/tokens" "$work/spool" "$work/state"
chmod 700 "$work/tokens"

echo "== starting the org emulator"
"$target/sf-emulator" --bind 127.0.0.1:0 > "$work/emulator.json" 2> "$work/emulator.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/emulator.json" ] && break; sleep 0.1; done
read -r login_url instance_url org_id < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["login_url"], d["instance_url"], d["org_id"])' "$work/emulator.json")
echo "   login $login_url  instance $instance_url  org $org_id"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
admin_port="$(free_port)"
agent_port="$(free_port)"
cat > "$work/conf/autoload_configs/natterbox_sf.conf.xml" <<XML
<configuration name="natterbox_sf.conf" description="demo">
  <settings>
    <param name="default-org" value="acme"/>
    <param name="lookup-timeout-ms" value="1500"/>
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
        <object name="Contact" fields="Id,Name,OwnerId,Owner.Name,Owner.Extension,Account.Name">
          <map field="Owner.Extension" variable="sf_owner_extension"/>
          <map field="Owner.Name" variable="sf_owner_name"/>
          <map field="Account.Name" variable="sf_account_name"/>
        </object>
        <object name="Lead" fields="Id,Name,OwnerId,Company"><map field="Company" variable="sf_company"/></object>
        <object name="Account" fields="Id,Name,OwnerId"/>
      </profile>
      <call-log enabled="true" subject="Call {direction} {from}" status="Completed"/>
      <screen-pop ttl-ms="30000"/>
    </org>
  </orgs>
</configuration>
XML

echo "== starting the sidecar (JWT bearer flow against the emulator)"
"$target/natterbox-sidecar" --config "$work/conf/autoload_configs/natterbox_sf.conf.xml" > "$work/sidecar.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/tokens/acme.json" ] && break; sleep 0.1; done
[ -s "$work/tokens/acme.json" ] || { echo "the sidecar wrote no token:"; cat "$work/sidecar.log"; exit 1; }
echo "   token file $(stat -c '%a %n' "$work/tokens/acme.json")"

echo "== FreeSWITCH module in the host shim: simulated inbound calls"
module="$target/libmod_natterbox_sf.so"
{
  echo "load $module mod_natterbox_sf"
  echo "call call-1 caller_id_number=+14155550123 destination_number=2000 caller_id_name=Ada"
  echo "app call-1 sf_lookup"
  echo "vars call-1"
  echo "call call-2 caller_id_number=(415)555-0123 destination_number=2000"
  echo "app call-2 sf_lookup"
  echo "vars call-2"
  echo "call call-3 caller_id_number=+442079460958 destination_number=2000"
  echo "app call-3 sf_lookup timeout_ms=800"
  echo "vars call-3"
  echo "call call-4 caller_id_number=anonymous destination_number=2000"
  echo "app call-4 sf_lookup"
  echo "vars call-4"
  echo "answer call-1"
  echo "app call-1 sf_screen_pop extension=1001"
  echo "sleep 1500"
  echo "hangup call-1 NORMAL_CLEARING"
  echo "wait_events"
  echo "sleep 3000"
  echo "api sf status"
  echo "unload mod_natterbox_sf"
  echo "exit"
} | "$shim" --conf-dir "$work/conf" > "$work/shim.out" 2> "$work/shim.log"

python3 - "$work/shim.out" <<'PY'
import sys
cmd = None
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith(">>> "):
        cmd = line[4:]
        if cmd.startswith(("app ", "api ", "hangup", "unload")):
            print(f"\n  $ {cmd}")
    elif line.startswith("var ") and cmd and cmd.startswith("vars"):
        name = line[4:].split("=", 1)[0]
        if name.startswith("sf_"):
            print(f"      {line[4:]}")
    elif line.startswith("out ") and cmd and cmd.startswith("api"):
        print(f"      {line[4:]}")
    elif line.startswith(("app_status", "shutdown_status", "leaks")):
        print(f"      {line}")
PY

echo
echo "== in the org: the call log written by the sidecar as a Task"
for _ in $(seq 50); do
  curl -s "$login_url/__emulator/records/Task" > "$work/tasks.json"
  grep -q '"CallObject":"call-1"' "$work/tasks.json" && break
  sleep 0.2
done
python3 - "$work/tasks.json" <<'PY'
import json, sys
tasks = [t for t in json.load(open(sys.argv[1])) if t.get("CallObject") == "call-1"]
if not tasks:
    raise SystemExit("no Task for call-1 (see the sidecar log)")
t = tasks[0]
for k in ("Id", "Subject", "TaskSubtype", "CallType", "CallDurationInSeconds", "CallObject", "WhoId", "Status"):
    print(f"      {k}: {t.get(k)}")
PY
echo
echo "== sidecar: screen pops and call logs"
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^natterbox_sidecar_(pops|call_logs|outbox)[a-z_]*' | head -8 || true
echo
echo "== the agent's side: the console in headless chromium (PNG screenshots in demo-output/)"
node "$top/tests/browser/demo.js" "$top/demo-output"
echo
if [ -n "${FREESWITCH_PREFIX:-}" ] && [ -x "$FREESWITCH_PREFIX/bin/freeswitch" ]; then
  echo "== FREESWITCH_PREFIX is set: the same against the real FreeSWITCH, with SIP calls (sipp)"
  "$top/tests/freeswitch/run.sh"
fi
echo "demo: ok"
