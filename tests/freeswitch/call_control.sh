# Sourced by tests/freeswitch/run.sh once the sidecar stand-in is up: an agent's call control on
# real SIP calls. The stand-in passes each command to the module as the sidecar does once it has
# authorised the agent (a `switch_command` line on the module↔sidecar socket); the module runs
# FreeSWITCH's own commands. sipp plays the agent's phone (what click-to-dial rings first), the
# customer (3001 in the dialplan) and a transfer target (3002); the checks read what each phone
# received, FreeSWITCH's answers and the call states the module reports to the sidecar.
# Needs from run.sh: work, here, agent_sip/agent_media, customer_sip/customer_media,
# target_sip/target_media, fscli, ok/not_ok/check/note, bg_pids.

agent_user=005xx000001SvLbYAK

# phone <pid variable> <tag> <sip port> <media port>: a sipp phone (uas_phone.xml) in the
# background, taking one call; its trace in $work/sipp/<tag>.msg.
phone() {
  (cd "$work/sipp" && exec timeout 90 sipp -sf "$here/uas_phone.xml" -m 1 -i 127.0.0.1 -p "$3" -mp "$4" \
    -nostdin -timeout 80s -timeout_error -trace_err -error_file "$work/sipp/$2.err" \
    -trace_msg -message_file "$work/sipp/$2.msg" >"$work/sipp/$2.out" 2>&1) &
  printf -v "$1" '%s' "$!"
  bg_pids+=("$!")
}

# agent_command <json>: one line to the module through the stand-in; prints its reply. The
# time it was sent (ms since the epoch) goes to $work/sent_at_ms.
agent_command() {
  python3 - "$work/control.sock" "$1" "$work/sent_at_ms" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
sent_at = time.time()
s.sendall(sys.argv[2].encode() + b"\n")
with open(sys.argv[3], "w") as f:
    f.write("%d\n" % (sent_at * 1000))
print(s.makefile("rb").readline().decode().strip())
PY
}

# poll <seconds> <command…>: true as soon as the command is, false at the deadline.
poll() {
  local deadline=$(($(date +%s%3N) + $1 * 1000))
  shift
  while ! "$@"; do
    [ "$(date +%s%3N)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# received <tag> <method> <n>: the phone received at least n requests of that method.
received() { [ "$(grep -ac "^$2 sip:" "$work/sipp/$1.msg" 2>/dev/null)" -ge "$3" ]; }
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
result_of() { grep -a '"type":"switch_result","id":'"$1"',' "$work/sidecar.jsonl" | tail -1; }
has_result() { [ -n "$(result_of "$1")" ]; }
# state_seen <call uuid> <state> [n]: the module reported that state of the call (n times).
state_count() { grep -a '"type":"call_state"' "$work/sidecar.jsonl" | grep -a '"call_uuid":"'"$1"'"' | grep -ac '"state":"'"$2"'"'; }
state_seen() { [ "$(state_count "$1" "$2")" -ge "${3:-1}" ]; }
# agent_do <id> <json of the command>: sends it, waits for the module's result; true when ok.
agent_do() {
  local reply
  reply=$(agent_command '{"type":"switch_command","id":'"$1"',"command":'"$2"'}')
  [ "$reply" = sent ] || { note "stand-in: $reply"; return 1; }
  poll 10 has_result "$1" || { note "no switch_result $1"; return 1; }
  grep -q '"ok":true' <<<"$(result_of "$1")" || { note "result: $(result_of "$1")"; return 1; }
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

# -- 1. Click-to-dial: the agent's phone first, then the customer with the org's caller id.
phone agent_pid agent "$agent_sip" "$agent_media"
phone customer_pid customer "$customer_sip" "$customer_media"
phone target_pid target "$target_sip" "$target_media"
poll 10 listening "$agent_sip" "$customer_sip" "$target_sip"
call1=$(cat /proc/sys/kernel/random/uuid)
check "click-to-dial: the module ran the originate (switch_result ok)" \
  agent_do 101 '{"action":"dial","call_uuid":"'"$call1"'","org":"acme","agent_user_id":"'"$agent_user"'","agent_extension":"1001","number":"3001","record_id":"003xx000004TmiQAAS"}'
check "click-to-dial: the agent's phone rang first (INVITE to sip:1001@…)" poll 10 received agent INVITE 1
agent_invite=$(nth_request agent INVITE 1)
invite_at=$(request_at_ms agent INVITE 1)
dial_at=$(cat "$work/sent_at_ms")
note "click-to-dial → first INVITE at the agent's phone: $((invite_at - dial_at)) ms (the dial command written to the module's socket → sipp's receive timestamp)"
check "… the agent's INVITE names the agent's extension and shows the number dialled" \
  grep -q "^INVITE sip:1001@127.0.0.1:$agent_sip" <<<"$agent_invite"
grep -qi '^From:.*3001' <<<"$agent_invite" || note "agent's INVITE From: $(grep -i '^From:' <<<"$agent_invite")"
check "then the customer rang (INVITE to 3001, after the agent answered)" poll 10 received customer INVITE 1
customer_invite=$(nth_request customer INVITE 1)
customer_at=$(request_at_ms customer INVITE 1)
agent_ack_at=$(request_at_ms agent ACK 1)
check "… the customer's INVITE came after the agent's phone answered ($((customer_at - invite_at)) ms after the agent's)" \
  test -n "$agent_ack_at" -a "${customer_at:-0}" -ge "${agent_ack_at:-99999999999999}"
check "… with the org's caller id (+14155550100) in From" grep -qi '^From:.*+14155550100' <<<"$customer_invite"
check "the module reported the call answered" poll 10 state_seen "$call1" answered
check "the customer answered too (ACK at the customer)" poll 10 received customer ACK 1

# -- 2. Hold and resume: re-INVITEs to the agent's phone.
check "hold: uuid_hold ran (switch_result ok)" agent_do 102 '{"action":"hold","call_uuid":"'"$call1"'"}'
check "hold: the agent's phone got a re-INVITE" poll 10 received agent INVITE 2
hold_sdp=$(nth_request agent INVITE 2)
check "… with a=sendonly or a=inactive" grep -qE '^a=(sendonly|inactive)' <<<"$hold_sdp"
note "hold re-INVITE: $(grep -aE '^a=(sendonly|inactive|sendrecv|recvonly)' <<<"$hold_sdp" | tr -d '\r' | tr '\n' ' ')"
check "the module reported the call held" poll 10 state_seen "$call1" held
check "resume: uuid_hold off ran (switch_result ok)" agent_do 103 '{"action":"resume","call_uuid":"'"$call1"'"}'
check "resume: another re-INVITE, no longer sendonly/inactive" poll 10 received agent INVITE 3
resume_sdp=$(nth_request agent INVITE 3)
check "… the resume re-INVITE is not sendonly/inactive" test -z "$(grep -E '^a=(sendonly|inactive)' <<<"$resume_sdp")"
check "the module reported the call answered again" poll 10 state_seen "$call1" answered 2

# -- 3. Mute and unmute: uuid_audio's read mute as a media bug on the agent's leg.
check "mute: uuid_audio <uuid> start read mute 1 accepted (switch_result ok)" \
  agent_do 104 '{"action":"mute","call_uuid":"'"$call1"'"}'
check "… the agent's leg has the audio media bug" poll 5 has_audio_bug "$call1"
note "uuid_buglist after mute: $(bugs "$call1" | tr -d '\n' | cut -c1-160)"
check "… and the module reported muted" poll 5 grep -aq '"call_uuid":"'"$call1"'".*"muted":true' "$work/sidecar.jsonl"
check "unmute: uuid_audio <uuid> stop (switch_result ok)" agent_do 105 '{"action":"unmute","call_uuid":"'"$call1"'"}'
check "… the media bug is gone" poll 5 no_audio_bug "$call1"

# -- 4. Blind transfer: the customer goes to 3002, the agent's phone is let go.
check "blind transfer to 3002: uuid_transfer -bleg ran (switch_result ok)" \
  agent_do 106 '{"action":"transfer","call_uuid":"'"$call1"'","to":"3002","mode":"blind"}'
check "the transfer target's phone rang and answered (INVITE, ACK)" poll 10 received target ACK 1
check "the agent's phone got BYE" poll 10 received agent BYE 1
check "the module reported the call transferred to 3002" \
  poll 10 grep -aq '"call_uuid":"'"$call1"'".*"state":"transferred".*"transferred_to":"3002"\|"transferred_to":"3002".*"call_uuid":"'"$call1"'".*"state":"transferred"' "$work/sidecar.jsonl"
# show calls reads the core database, which FreeSWITCH fills asynchronously.
bridged_row() { fscli 'show calls' | grep -a 'sofia/internal/3001@' | grep -a 'sofia/internal/3002@'; }
is_bridged() { [ -n "$(bridged_row)" ]; }
check "the customer is bridged to the target (show calls: the 3001 leg with the 3002 leg)" poll 10 is_bridged
bridged=$(bridged_row)
check "… and the customer's phone got no BYE" test "$(grep -ac '^BYE sip:' "$work/sipp/customer.msg")" -eq 0
note "bridged: $(cut -c1-200 <<<"$bridged")"
fscli 'hupall NORMAL_CLEARING' >/dev/null
poll 15 gone "$agent_pid"; wait "$agent_pid"; rc_a=$?
poll 15 gone "$customer_pid"; wait "$customer_pid"; rc_c=$?
poll 15 gone "$target_pid"; wait "$target_pid"; rc_t=$?
check "the three phones' calls completed (sipp exits: agent $rc_a, customer $rc_c, target $rc_t)" \
  test "$rc_a" -eq 0 -a "$rc_c" -eq 0 -a "$rc_t" -eq 0

# -- 5. Hang-up from the console: both the agent's phone and the customer get BYE.
phone agent2_pid agent2 "$agent_sip" "$agent_media"
phone customer2_pid customer2 "$customer_sip" "$customer_media"
poll 10 listening "$agent_sip" "$customer_sip"
call2=$(cat /proc/sys/kernel/random/uuid)
check "second click-to-dial (switch_result ok)" \
  agent_do 107 '{"action":"dial","call_uuid":"'"$call2"'","org":"acme","agent_user_id":"'"$agent_user"'","agent_extension":"1001","number":"3001","record_id":null}'
check "… answered at both ends" poll 15 received customer2 ACK 1
poll 10 state_seen "$call2" answered
check "hang-up: uuid_kill ran (switch_result ok)" agent_do 108 '{"action":"hangup","call_uuid":"'"$call2"'"}'
check "hang-up: the agent's phone got BYE" poll 10 received agent2 BYE 1
check "hang-up: the customer got BYE" poll 10 received customer2 BYE 1
check "the module reported the call ended" poll 10 state_seen "$call2" ended
check "a command on the ended call is refused with a reason" \
  test "$(agent_command '{"type":"switch_command","id":109,"command":{"action":"hold","call_uuid":"'"$call2"'"}}')" = sent
poll 10 has_result 109
check "… (switch_result ok:false: $(result_of 109 | sed 's/.*"error":"\([^"]*\)".*/\1/'))" grep -q '"ok":false' <<<"$(result_of 109)"
poll 15 gone "$agent2_pid"; wait "$agent2_pid"; rc_a=$?
poll 15 gone "$customer2_pid"; wait "$customer2_pid"; rc_c=$?
bg_pids=()
check "both phones' calls completed (sipp exits: agent $rc_a, customer $rc_c)" test "$rc_a" -eq 0 -a "$rc_c" -eq 0
