# Sourced by tests/freeswitch/run.sh after the stand-in checks: an agent's call control on real
# SIP calls, end to end through the real sidecar. The stand-in is stopped and the real
# natterbox-sidecar takes the module's event socket; two consoles (tests/freeswitch/
# agent_console.py, a WebSocket client of the sidecar's /agent as a browser console is) send the
# agents' commands; the sidecar authorises them and the module runs FreeSWITCH's own commands.
# sipp plays the agent's phone (what click-to-dial rings first), the customer (3001 in the
# dialplan) and a transfer / three-way target (3002). The checks read what each phone received,
# FreeSWITCH's own state (show calls, uuid_getvar, uuid_buglist, uuid_exists) and the frames
# the consoles received.
# Needs from run.sh: work, here, conf, instance_url, sidecar_bin, sidecar_admin,
# sidecar_agent, agent_sip/agent_media, customer_sip/customer_media, target_sip/target_media,
# fscli, ok/not_ok/check/note, bg_pids, sidecar_pid.

# -- The real sidecar in place of the stand-in, and the agents' consoles.
kill "$sidecar_pid" 2>/dev/null
wait "$sidecar_pid" 2>/dev/null
sidecar_pid=""
# Two users of the org: Grace (extension 1001, whose phone is the agent's sipp) and Alan (1002),
# read with a token of their own (the suite expires the org's sessions before this).
query_token=$(curl -s -u '3MVG9Emu.CC.ClientId.natterbox:cc-app-secret' -d grant_type=client_credentials \
  "$instance_url/services/oauth2/token" | json_str access_token)
users=$(curl -s -H "Authorization: Bearer $query_token" \
  "$instance_url/services/data/v68.0/query?q=SELECT+Id+FROM+User+ORDER+BY+Username+LIMIT+2" |
  python3 -c 'import json,sys; print(" ".join(r["Id"] for r in json.load(sys.stdin)["records"]))')
read -r grace_id alan_id <<<"$users"
grace_token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
alan_token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
printf '{"agents":[{"user_id":"%s","extension":"1001","token_sha256":"%s"},{"user_id":"%s","extension":"1002","token_sha256":"%s"}]}\n' \
  "$grace_id" "$(sha "$grace_token")" "$alan_id" "$(sha "$alan_token")" >"$work/agents.json"
mkdir -p "$work/sidecar-state"
NATTERBOX_TEST_SECRET=cc-app-secret RUST_LOG=info "$sidecar_bin" --config "$conf/autoload_configs/natterbox_sf.conf.xml" \
  </dev/null >/dev/null 2>"$work/natterbox-sidecar.log" &
sidecar_pid=$!

# poll <seconds> <command…>: true as soon as the command is, false at the deadline.
poll() {
  local deadline=$(($(date +%s%3N) + $1 * 1000))
  shift
  while ! "$@"; do
    [ "$(date +%s%3N)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$sidecar_admin/healthz")" = 200 ]; }
module_connected() { fscli 'sf metrics' | grep -q '_sidecar_connected 1$'; }
check "the real sidecar is up (/healthz 200)" poll 30 healthy
check "the module connected to the real sidecar (sf metrics: sidecar_connected 1)" poll 20 module_connected

console_py="$here/agent_console.py"
# console <name> <token>: a console in the background; its frames in $work/<name>.jsonl.
console() {
  python3 "$console_py" run "ws://127.0.0.1:$sidecar_agent/agent" "$2" "$work/$1.jsonl" "$work/$1.sock" \
    >"$work/$1.out" 2>&1 &
  console_pids+=("$!")
  bg_pids+=("$!")
}
# frame <name> <json subset> [n]: the console received (n) such frames; prints the last one.
frame() { python3 "$console_py" find "$work/$1.jsonl" "$2" "${3:-1}"; }
has_frame() { frame "$@" >/dev/null; }
# say <name> <json>: the console sends a command frame.
say() { [ "$(python3 "$console_py" send "$work/$1.sock" "$2")" = sent ]; }
# ask <name> <id> <json>: sends the command (with that id), waits for its result; prints it.
ask() {
  say "$1" "$3" || return 1
  poll 10 has_frame "$1" '{"type":"result","id":"'"$2"'"}' || { echo '{"no_result":true}'; return 1; }
  frame "$1" '{"type":"result","id":"'"$2"'"}'
}
is_ok() { grep -q '"ok":true' <<<"$1"; }
# The time (ms since the epoch) a console sent the command with that id.
sent_at() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    f = json.loads(l)
    if f.get("_sent", {}).get("id") == sys.argv[2]: print(f["_at_ms"]); break' "$work/$1.jsonl" "$2"
}
console_pids=()
console grace "$grace_token"
console alan "$alan_token"
check "both consoles connected: hello and presence frames" \
  poll 10 eval 'has_frame grace "{\"type\":\"hello\"}" && has_frame alan "{\"type\":\"hello\"}"'
timeout 10 python3 "$console_py" run "ws://127.0.0.1:$sidecar_agent/agent" "not-a-token" "$work/stranger.jsonl" "$work/stranger.sock" \
  >"$work/stranger.out" 2>&1
check "a console with an unknown token is refused ($(cat "$work/stranger.out"))" grep -q '^refused 40[13]' "$work/stranger.out"

# phone <pid variable> <tag> <sip port> <media port> [scenario]: a sipp phone (uas_phone.xml) in
# the background, taking one call; its trace in $work/sipp/<tag>.msg.
phone() {
  (cd "$work/sipp" && exec timeout 90 sipp -sf "$here/${5:-uas_phone.xml}" -m 1 -i 127.0.0.1 -p "$3" -mp "$4" \
    -nostdin -timeout 80s -timeout_error -trace_err -error_file "$work/sipp/$2.err" \
    -trace_msg -message_file "$work/sipp/$2.msg" >"$work/sipp/$2.out" 2>&1) &
  printf -v "$1" '%s' "$!"
  bg_pids+=("$!")
}
# received <tag> <method> <n>: the phone received at least n requests of that method.
received() { [ "$(grep -ac "^$2 sip:" "$work/sipp/$1.msg" 2>/dev/null)" -ge "$3" ]; }
count_received() { grep -ac "^$2 sip:" "$work/sipp/$1.msg" 2>/dev/null; }
# The n-th received request of a method, whole (headers and SDP).
nth_request() {
  awk -v m="$2" -v n="$3" '
    /^-+ [0-9]+-[0-9]+-[0-9]+ / { if (inreq) exit; next }
    /message received/ { rec = 1; next }
    rec && NF { rec = 0; if (index($0, m " sip:") == 1 && ++seen == n) inreq = 1 }
    inreq { print }' "$work/sipp/$1.msg"
}
# When the phone received the n-th request of a method, in ms since the epoch.
request_at_ms() {
  local ts
  ts=$(awk -v m="$2" -v n="$3" '
    /^-+ [0-9]+-[0-9]+-[0-9]+ / { at = $2 " " $3; next }
    /message received/ { rec = 1; next }
    rec && NF { rec = 0; if (index($0, m " sip:") == 1 && ++seen == n) { print at; exit } }' \
    "$work/sipp/$1.msg")
  [ -n "$ts" ] && date -d "$ts" +%s%3N
}
bugs() { fscli "uuid_buglist $1"; }
has_audio_bug() { grep -q audio <<<"$(bugs "$1")"; }
no_audio_bug() { [ "$(fscli "uuid_exists $1")" = true ] && ! grep -q audio <<<"$(bugs "$1")"; }
# listening <udp port…>: every phone has bound its SIP port.
listening() {
  local p bound
  bound=$(ss -uln 2>/dev/null | awk 'NR > 1 {print $4}')
  for p in "$@"; do grep -qE "[:.]$p\$" <<<"$bound" || return 1; done
}
gone() { ! kill -0 "$1" 2>/dev/null; }
# show calls reads the core database, which FreeSWITCH fills asynchronously.
calls_row() { fscli 'show calls' | grep -a "$1" | grep -a "$2"; }
bridged() { [ -n "$(calls_row "$1" "$2")" ]; }
# The customer reaches the target: bridged to it, or to the loopback leg (loopback/3002-a) whose
# other half (loopback/3002-b) is bridged to it, the dialplan's way to 3002.
customer_with_target() {
  bridged 'sofia/internal/3001@' 'sofia/internal/3002@' ||
    { bridged 'sofia/internal/3001@' 'loopback/3002-a' && bridged 'loopback/3002-b' 'sofia/internal/3002@'; }
}
# The customer's channel (the 3001 leg) and FreeSWITCH's variables on a channel.
# (show channels: uuid is the 1st column, the channel name the 5th; the agent's leg shows 3001 too.)
customer_uuid() { fscli 'show channels' | awk -F, '$5 ~ /^sofia\/internal\/3001@/ {print $1; exit}'; }
getvar() { fscli "uuid_getvar $1 $2"; }
var_is() { [ "$(getvar "$1" "$2")" = "$3" ]; }
# finish_phones <pid…>: hang up whatever is left, wait for each phone; true when all completed.
finish_phones() {
  local p rc=0
  fscli 'hupall NORMAL_CLEARING' >/dev/null
  for p in "$@"; do
    poll 15 gone "$p"
    wait "$p" || rc=1
  done
  return $rc
}
# dial <id> <tag suffix>: click-to-dial 3001 from Grace's console with fresh phones for the
# agent and the customer; sets call (its uuid) once both answered.
dial() {
  phone agent_pid "agent$2" "$agent_sip" "$agent_media"
  phone customer_pid "customer$2" "$customer_sip" "$customer_media"
  poll 10 listening "$agent_sip" "$customer_sip"
  local reply
  reply=$(ask grace "$1" '{"type":"dial","id":"'"$1"'","number":"3001","record_id":"003xx000004TmiQAAS"}')
  call=$(json_str call_uuid <<<"$reply")
  is_ok "$reply" && [ -n "$call" ] || { note "dial: $reply"; return 1; }
  poll 15 received "customer$2" ACK 1 && poll 10 has_frame grace '{"type":"call","call_uuid":"'"$call"'","state":"answered"}'
}

# -- 1. Click-to-dial: the agent's phone first, then the customer with the org's caller id.
phone agent_pid agent "$agent_sip" "$agent_media"
phone customer_pid customer "$customer_sip" "$customer_media"
poll 10 listening "$agent_sip" "$customer_sip"
reply=$(ask grace d1 '{"type":"dial","id":"d1","number":"3001","record_id":"003xx000004TmiQAAS"}')
call1=$(json_str call_uuid <<<"$reply")
check "click-to-dial from the console: the sidecar answered ok with the call's uuid ($call1)" \
  test -n "$call1" -a -n "$(is_ok "$reply" && echo y)"
check "click-to-dial: the agent's phone rang first (INVITE to sip:1001@…)" poll 10 received agent INVITE 1
agent_invite=$(nth_request agent INVITE 1)
invite_at=$(request_at_ms agent INVITE 1)
dial_at=$(sent_at grace d1)
note "click-to-dial → first INVITE at the agent's phone: $((invite_at - dial_at)) ms (the console's dial frame written to the sidecar's WebSocket → sipp's receive timestamp)"
check "… the agent's INVITE names the agent's extension" \
  grep -q "^INVITE sip:1001@127.0.0.1:$agent_sip" <<<"$agent_invite"
check "then the customer rang (INVITE to 3001, after the agent answered)" poll 10 received customer INVITE 1
customer_invite=$(nth_request customer INVITE 1)
customer_at=$(request_at_ms customer INVITE 1)
agent_ack_at=$(request_at_ms agent ACK 1)
check "… the customer's INVITE came after the agent's phone answered ($((customer_at - invite_at)) ms after the agent's)" \
  test -n "$agent_ack_at" -a "${customer_at:-0}" -ge "${agent_ack_at:-99999999999999}"
check "… with the org's caller id (+14155550100) in From" grep -qi '^From:.*+14155550100' <<<"$customer_invite"
check "the console shows the call answered" poll 10 has_frame grace '{"type":"call","call_uuid":"'"$call1"'","state":"answered"}'
check "the customer answered too (ACK at the customer)" poll 10 received customer ACK 1
customer1=$(customer_uuid)

# -- 2. Another agent's console is refused (403) and FreeSWITCH hears nothing of it.
for cmd in hold hangup; do
  reply=$(ask alan "a-$cmd" '{"type":"'"$cmd"'","id":"a-'"$cmd"'","call_uuid":"'"$call1"'"}')
  check "Alan's $cmd on Grace's call: 403 not_your_call" grep -q '"code":403.*"reason":"not_your_call"\|"reason":"not_your_call".*"code":403' <<<"$reply"
done
check "… the call is untouched: the agent's phone got no re-INVITE or BYE, the call is up" \
  test "$(count_received agent INVITE)" -eq 1 -a "$(count_received agent BYE)" -eq 0 -a "$(fscli "uuid_exists $call1")" = true

# -- 3. Hold and resume: re-INVITEs to the agent's phone.
check "hold from the console (result ok)" is_ok "$(ask grace h1 '{"type":"hold","id":"h1","call_uuid":"'"$call1"'"}')"
check "hold: the agent's phone got a re-INVITE" poll 10 received agent INVITE 2
hold_sdp=$(nth_request agent INVITE 2)
check "… with a=sendonly or a=inactive" grep -qE '^a=(sendonly|inactive)' <<<"$hold_sdp"
check "the console shows the call held" poll 10 has_frame grace '{"type":"call","call_uuid":"'"$call1"'","state":"held"}'
check "resume from the console (result ok)" is_ok "$(ask grace h2 '{"type":"resume","id":"h2","call_uuid":"'"$call1"'"}')"
check "resume: another re-INVITE, no longer sendonly/inactive" poll 10 received agent INVITE 3
resume_sdp=$(nth_request agent INVITE 3)
check "… the resume re-INVITE is not sendonly/inactive" test -z "$(grep -E '^a=(sendonly|inactive)' <<<"$resume_sdp")"
check "the console shows the call answered again" poll 10 has_frame grace '{"type":"call","call_uuid":"'"$call1"'","state":"answered"}' 2

# -- 4. Mute and unmute: uuid_audio's read mute as a media bug on the agent's leg.
check "mute from the console (result ok)" is_ok "$(ask grace m1 '{"type":"mute","id":"m1","call_uuid":"'"$call1"'"}')"
check "… the agent's leg has the audio media bug" poll 5 has_audio_bug "$call1"
check "… and the console shows muted" poll 5 has_frame grace '{"type":"call","call_uuid":"'"$call1"'","muted":true}'
check "unmute from the console (result ok)" is_ok "$(ask grace m2 '{"type":"unmute","id":"m2","call_uuid":"'"$call1"'"}')"
check "… the media bug is gone" poll 5 no_audio_bug "$call1"

# -- 5. Warm transfer, cancelled: the agent consults 3002 while the customer waits, then comes back;
#       then a second one on the same call, completed.
phone target_pid target "$target_sip" "$target_media"
poll 10 listening "$target_sip"
check "warm transfer to 3002 from the console (result ok)" \
  is_ok "$(ask grace w1 '{"type":"transfer","id":"w1","call_uuid":"'"$call1"'","to":"3002","mode":"warm"}')"
check "the target's phone rang and answered (INVITE, ACK)" poll 10 received target ACK 1
check "… the agent's leg is bridged to the consult leg (show calls: the agent's leg with loopback/3002-a)" \
  poll 10 bridged "$call1" 'loopback/3002-a'
check "… and att_xfer holds the customer's leg ($customer1) aside (uuid_getvar: current_application att_xfer, soft_holding_uuid the customer's)" \
  test -n "$customer1" -a "$customer1" != "$call1" -a "$(getvar "$call1" current_application)" = att_xfer -a "$(getvar "$call1" soft_holding_uuid)" = "$customer1"
check "… the customer's phone is untouched (no BYE, no re-INVITE)" \
  test "$(count_received customer BYE)" -eq 0 -a "$(count_received customer INVITE)" -eq 1
reply=$(ask alan a-cancel '{"type":"cancel_transfer","id":"a-cancel","call_uuid":"'"$call1"'"}')
check "Alan cannot cancel Grace's transfer (403)" grep -q '"code":403' <<<"$reply"
check "cancel_transfer from Grace's console (result ok)" \
  is_ok "$(ask grace w2 '{"type":"cancel_transfer","id":"w2","call_uuid":"'"$call1"'"}')"
check "cancel: the target's phone got BYE" poll 10 received target BYE 1
check "cancel: att_xfer let go of the customer (soft_holding_uuid unset) and the agent is bridged to the customer (show calls)" \
  poll 10 eval 'var_is "$call1" soft_holding_uuid _undef_ && bridged "$call1" "$customer1"'
check "… and the customer never got a BYE" test "$(count_received customer BYE)" -eq 0
# Then, on the same call, a second warm transfer completed: after the cancel att_xfer's own
# uuid_bridge made the agent's leg its bridge's originator again, and the module hands the
# bridge back to the customer before att_xfer starts.
poll 10 gone "$target_pid"
phone target1b_pid target1b "$target_sip" "$target_media"
poll 10 listening "$target_sip"
check "complete after cancel: a second warm transfer on the same call (result ok)" \
  is_ok "$(ask grace w2b '{"type":"transfer","id":"w2b","call_uuid":"'"$call1"'","to":"3002","mode":"warm"}')"
check "… the second target answered (ACK) while the customer waits" poll 10 received target1b ACK 1
consulting_again() { var_is "$call1" soft_holding_uuid "$customer1" && bridged "$call1" 'loopback/3002-a'; }
check "… the agent talks to it (show calls), att_xfer holding the customer (soft_holding_uuid)" poll 10 consulting_again
check "… the agent hangs up from the console (result ok)" \
  is_ok "$(ask grace w2c '{"type":"hangup","id":"w2c","call_uuid":"'"$call1"'"}')"
check "… the agent's phone got BYE" poll 5 received agent BYE 1
note "complete after cancel: the agent's hang-up → BYE at the agent's phone: $(( $(request_at_ms agent BYE 1) - $(sent_at grace w2c) )) ms"
check "… the customer is now bridged to the second target (show calls)" poll 10 customer_with_target
check "… nobody else's leg was touched: no BYE to the customer or the second target, the first target only the cancel's" \
  test "$(count_received customer BYE)" -eq 0 -a "$(count_received target1b BYE)" -eq 0 -a "$(count_received target BYE)" -eq 1
check "… and the console shows the call transferred to 3002" \
  poll 5 has_frame grace '{"type":"call","call_uuid":"'"$call1"'","state":"transferred","transferred_to":"3002"}'
finish_phones "$agent_pid" "$customer_pid" "$target_pid" "$target1b_pid"
check "the four phones' calls completed" test $? -eq 0

# -- 6. Warm transfer, completed: the agent hangs up and the customer is bridged to the target.
# A fresh call, so that this checks a click-to-dial as first answered (the agent's leg holds the
# bridge to the customer); the module hands that bridge to the customer before att_xfer starts
# (README: what the real FreeSWITCH showed).
phone target2_pid target2 "$target_sip" "$target_media"
check "another click-to-dial, answered at both ends" dial d5 5
call1=$call
customer1=$(customer_uuid)
check "second warm transfer to 3002 (result ok)" \
  is_ok "$(ask grace w3 '{"type":"transfer","id":"w3","call_uuid":"'"$call1"'","to":"3002","mode":"warm"}')"
check "the target answered (ACK) while the customer waits" poll 10 received target2 ACK 1
consulting() { var_is "$call1" soft_holding_uuid "$customer1" && bridged "$call1" 'loopback/3002-a'; }
check "… the agent talks to the target (show calls), att_xfer holding the customer (soft_holding_uuid)" poll 10 consulting
check "the agent hangs up from the console (result ok)" is_ok "$(ask grace w4 '{"type":"hangup","id":"w4","call_uuid":"'"$call1"'"}')"
# Before the fix the agent's leg, hung up, waited for the customer's new bridge to end (20 s or
# more) in 5 of 11 runs; now the BYE follows at once.
check "the agent's phone got BYE" poll 5 received agent5 BYE 1
note "warm transfer completed: the agent's hang-up → BYE at the agent's phone: $(( $(request_at_ms agent5 BYE 1) - $(sent_at grace w4) )) ms"
check "the customer is now bridged to the target (show calls: the 3001 leg with the 3002 leg, or through loopback/3002)" \
  poll 10 customer_with_target
note "bridged: $(fscli 'show calls' | grep -a 'sofia/internal/3001@\|loopback/3002' | cut -d, -f1,5,17,21 | tr '\n' ' ')"
check "… the customer's phone got no BYE, the target's none either" \
  test "$(count_received customer5 BYE)" -eq 0 -a "$(count_received target2 BYE)" -eq 0
check "the console shows the call transferred to 3002" \
  poll 5 has_frame grace '{"type":"call","call_uuid":"'"$call1"'","state":"transferred","transferred_to":"3002"}'
finish_phones "$agent_pid" "$customer_pid" "$target2_pid"
check "the three phones' calls completed" test $? -eq 0

# -- 7. Blind transfer: the customer goes to 3002 at once, the agent's phone is let go.
phone target3_pid target3 "$target_sip" "$target_media"
check "second click-to-dial, answered at both ends" dial d2 2
call2=$call
check "blind transfer to 3002 from the console (result ok)" \
  is_ok "$(ask grace b1 '{"type":"transfer","id":"b1","call_uuid":"'"$call2"'","to":"3002","mode":"blind"}')"
check "the transfer target's phone rang and answered (INVITE, ACK)" poll 10 received target3 ACK 1
check "the agent's phone got BYE" poll 10 received agent2 BYE 1
check "the console shows the call transferred to 3002" \
  poll 10 has_frame grace '{"type":"call","call_uuid":"'"$call2"'","state":"transferred","transferred_to":"3002"}'
check "the customer is bridged to the target (show calls)" poll 10 customer_with_target
check "… and the customer's phone got no BYE" test "$(count_received customer2 BYE)" -eq 0
finish_phones "$agent_pid" "$customer_pid" "$target3_pid"
check "the three phones' calls completed" test $? -eq 0

# -- 8. Three-way: 3002 joins; all three hear each other; the agent leaves, the other two stay.
# FS_THREE_WAY_ROUNDS=N (default 1) repeats it on fresh calls, to look for races (README: the
# other party's leg hung up when att_xfer's consult bridge ended).
three_way_round() {
  local r="$1" reply
  phone target4_pid "target4$r" "$target_sip" "$target_media"
  check "third click-to-dial, answered at both ends" dial "d3$r" "3$r"
  call3=$call
  customer3=$(customer_uuid)
  [ -n "$customer3" ] && [ "$customer3" != "$call3" ] || note "the customer's leg not found in show channels"
  reply=$(ask grace "c1$r" '{"type":"conference","id":"c1'"$r"'","call_uuid":"'"$call3"'","to":"3002"}')
  leg3=$(json_str call_uuid <<<"$reply")
  check "three-way with 3002 from the console (result ok, the new leg $leg3)" test -n "$leg3" -a -n "$(is_ok "$reply" && echo y)"
  check "the target's phone rang and answered (INVITE, ACK)" poll 10 received "target4$r" ACK 1
  leg_is_up() { [ "$(fscli "uuid_exists $leg3")" = true ] && var_is "$leg3" current_application three_way; }
  check "the new leg runs three_way on the agent's leg (uuid_getvar current_application)" poll 10 leg_is_up
  check "… which mixes it into both directions of the agent's leg (uuid_buglist: an eavesdrop bug)" \
    poll 10 eval 'bugs "$call3" | grep -q eavesdrop'
  note "agent's leg bugs: $(bugs "$call3" | tr -d '\n' | cut -c1-200)"
  check "… while the agent is bridged to the customer again (show calls)" poll 10 bridged "$call3" "$customer3"
  check "… and nobody got a BYE" \
    test "$(count_received "agent3$r" BYE)" -eq 0 -a "$(count_received "customer3$r" BYE)" -eq 0 -a "$(count_received "target4$r" BYE)" -eq 0
  check "the agent leaves: hangup from the console (result ok)" \
    is_ok "$(ask grace "c2$r" '{"type":"hangup","id":"c2'"$r"'","call_uuid":"'"$call3"'"}')"
  check "the agent's phone got BYE" poll 10 received "agent3$r" BYE 1
  note "three-way left: the agent's hang-up → BYE at the agent's phone: $(( $(request_at_ms "agent3$r" BYE 1) - $(sent_at grace "c2$r") )) ms"
  check "the customer and the target are bridged to each other (show calls, directly or through loopback/3002)" \
    poll 10 customer_with_target
  note "after the agent left: $(fscli 'show calls' | grep -a 'sofia/internal/3001@\|loopback/3002' | cut -d, -f1,5,17,21 | tr '\n' ' ')"
  check "… and neither got a BYE" test "$(count_received "customer3$r" BYE)" -eq 0 -a "$(count_received "target4$r" BYE)" -eq 0
  check "the console shows the agent's call ended" poll 10 has_frame grace '{"type":"call","call_uuid":"'"$call3"'","state":"ended"}'
  finish_phones "$agent_pid" "$customer_pid" "$target4_pid"
  check "the three phones' calls completed" test $? -eq 0
}
three_way_round ""
for round in $(seq 2 "${FS_THREE_WAY_ROUNDS:-1}"); do
  note "three-way round $round"
  three_way_round "-$round"
done

# -- 9. Hang-up from the console: both the agent's phone and the customer get BYE.
check "fourth click-to-dial, answered at both ends" dial d4 4
call4=$call
check "hang-up from the console (result ok)" is_ok "$(ask grace x1 '{"type":"hangup","id":"x1","call_uuid":"'"$call4"'"}')"
check "hang-up: the agent's phone got BYE" poll 10 received agent4 BYE 1
check "hang-up: the customer got BYE" poll 10 received customer4 BYE 1
check "the console shows the call ended" poll 10 has_frame grace '{"type":"call","call_uuid":"'"$call4"'","state":"ended"}'
reply=$(ask grace x2 '{"type":"hold","id":"x2","call_uuid":"'"$call4"'"}')
check "a command on the ended call is refused: 404 no_such_call" grep -q '"code":404' <<<"$reply"
finish_phones "$agent_pid" "$customer_pid"
check "both phones' calls completed" test $? -eq 0
for p in "${console_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
bg_pids=()
