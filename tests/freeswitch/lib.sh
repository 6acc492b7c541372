# Shared by tests/freeswitch/run.sh (the real-FreeSWITCH suite), scripts/soak-freeswitch.sh and
# scripts/bench-freeswitch.sh: running an installed FreeSWITCH from a copy of its conf dir in a
# temporary directory, on free ports, with mod_natterbox_sf loaded, leaving the installation
# untouched. Source it after setting `prefix` (the FreeSWITCH install) and `work` (the temporary
# directory).
#
#   fs_locate                     sets fs_bin, fs_cli_bin, src_conf, src_mod (or returns 1 with a reason)
#   alloc_port                    sets port: a free TCP/UDP port (and the next three)
#   fs_prepare <module.so>        $work/conf and $work/mod; needs sip_port and esl_port set;
#                                 loads the modules in $fs_modules (default: what the tests need)
#   fs_start [wrapper…]           starts FreeSWITCH, waits for its event socket; sets fs_pid. With a
#                                 wrapper (e.g. valgrind …), FreeSWITCH runs in the foreground
#                                 under it, in the background of this shell
#   fs_stop [seconds]             stops it (the event socket, then signals after 10 s or seconds)
#   fscli <command…>              one fs_cli command
#   json_str <key>, json_num <key>  a string / number field of the JSON on stdin (flat objects)

fs_first_dir() { for d in "$@"; do [ -n "$d" ] && [ -d "$d" ] && { echo "$d"; return 0; }; done; return 1; }

fs_locate() {
  fs_bin="$prefix/bin/freeswitch"
  fs_cli_bin="$prefix/bin/fs_cli"
  src_conf=$(fs_first_dir "${FREESWITCH_CONF_DIR:-}" "$prefix/etc/freeswitch" "$prefix/conf") || {
    fs_error="no conf dir under $prefix (set FREESWITCH_CONF_DIR)"; return 1; }
  src_mod=$(fs_first_dir "${FREESWITCH_MOD_DIR:-}" "$prefix/lib/freeswitch/mod" "$prefix/mod") || {
    fs_error="no mod dir under $prefix (set FREESWITCH_MOD_DIR)"; return 1; }
  [ -x "$fs_cli_bin" ] || { fs_error="fs_cli is not installed next to freeswitch ($fs_cli_bin)"; return 1; }
}

json_str() { sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p' | head -1; }
json_num() { sed -n 's/.*"'"$1"'":"\{0,1\}\([0-9][0-9]*\).*/\1/p' | head -1; }

# Free ports (TCP and UDP, with the next three for sipp's RTCP and video), away from
# FreeSWITCH's defaults and RTP range: counting up from a random base, so two never repeat.
# Sets $port; call it in the main shell only (a subshell's count is lost).
port_next=$(( (RANDOM % 1500) * 10 + 40000 ))
alloc_port() {
  local _
  for _ in $(seq 1000); do
    port_next=$((port_next + 4))
    if ! ss -tuan 2>/dev/null | awk 'NR > 1 {print $5}' |
      grep -qE "[:.]($port_next|$((port_next + 1))|$((port_next + 2))|$((port_next + 3)))\$"; then
      port=$port_next; return 0
    fi
  done
  return 1
}

# A copy of the installed conf, adapted (loopback, our ports, only the modules needed, no
# WebSocket listeners, no auth challenge for test calls); a module dir of links plus ours. The
# caller writes natterbox_sf.conf.xml and the dialplan into $work/conf afterwards.
fs_prepare() {
  local so="$1" m p
  conf="$work/conf"
  cp -a "$src_conf" "$conf"
  mkdir -p "$work"/{log,db,run,tmp,cache,storage,recordings,mod,sipp} "$conf/tls"
  for m in "$src_mod"/*.so; do ln -s "$m" "$work/mod/$(basename "$m")"; done
  rm -f "$work/mod/mod_natterbox_sf.so"
  # FreeSWITCH finds a module by file name.
  install -m 0755 "$so" "$work/mod/mod_natterbox_sf.so"
  # Only the modules the tests need (the installed list may name modules not installed).
  {
    echo '<configuration name="modules.conf" description="Modules">'
    echo '  <modules>'
    for m in ${fs_modules:-mod_console mod_logfile mod_event_socket mod_sofia mod_commands mod_dptools mod_dialplan_xml}; do
      [ -e "$work/mod/$m.so" ] && echo "    <load module=\"$m\"/>"
    done
    echo '    <load module="mod_natterbox_sf"/>'
    echo '  </modules>'
    echo '</configuration>'
  } >"$conf/autoload_configs/modules.conf.xml"
  cat >"$conf/autoload_configs/event_socket.conf.xml" <<EOF_ESL
<configuration name="event_socket.conf" description="Socket Client">
  <settings>
    <param name="nat-map" value="false"/>
    <param name="listen-ip" value="127.0.0.1"/>
    <param name="listen-port" value="$esl_port"/>
    <param name="password" value="ClueCon"/>
  </settings>
</configuration>
EOF_ESL
  # Loopback only, no STUN, no auth challenge for the test calls, our SIP port.
  sed -i -e 's/cmd="stun-set" data="\([a-z_]*\)=[^"]*"/cmd="set" data="\1=127.0.0.1"/' \
    -e 's/data="internal_sip_port=[0-9]*"/data="internal_sip_port='"$sip_port"'"/' \
    -e 's/data="internal_auth_calls=[a-z]*"/data="internal_auth_calls=false"/' \
    -e 's/data="local_ip_v4=[^"]*"/data="local_ip_v4=127.0.0.1"/' \
    "$conf/vars.xml"
  grep -q 'data="local_ip_v4=' "$conf/vars.xml" ||
    sed -i '0,/<include>/s//<include>\n  <X-PRE-PROCESS cmd="set" data="local_ip_v4=127.0.0.1"\/>/' "$conf/vars.xml"
  [ -f "$conf/sip_profiles/internal.xml" ] || {
    fs_error="the conf has no sip_profiles/internal.xml (the stock internal profile)"; return 1; }
  grep -q "data=\"internal_sip_port=$sip_port\"" "$conf/vars.xml" ||
    sed -i 's/name="sip-port" value="[^"]*"/name="sip-port" value="'"$sip_port"'"/' "$conf/sip_profiles/internal.xml"
  for p in "$conf"/sip_profiles/*.xml; do
    [ "$(basename "$p")" = internal.xml ] || mv "$p" "$p.noload"
  done
  # No WebSocket listeners (fixed ports another FreeSWITCH may hold); inbound ACL: loopback.
  sed -i -e '/name="ws-binding"/d' -e '/name="wss-binding"/d' \
    -e 's/name="apply-inbound-acl" value="[^"]*"/name="apply-inbound-acl" value="loopback.auto"/' \
    "$conf/sip_profiles/internal.xml"
}

fscli() { timeout 60 "$fs_cli_bin" -H 127.0.0.1 -P "$esl_port" -p ClueCon -x "$*" 2>&1; }

# Starts FreeSWITCH in the background with every directory in $work; waits (30 s each, or
# $fs_start_wait_s) for its pid and its event socket. Sets fs_pid and fs_log; on failure fs_error
# says why. Arguments, if any, are a wrapper command (valgrind …) that FreeSWITCH runs under.
fs_start() {
  local _ up="" tries=$(( ${fs_start_wait_s:-30} * 5 ))
  local dirs=(-nonat -nonatmap -conf "$conf" -log "$work/log" -db "$work/db" -run "$work/run"
    -mod "$work/mod" -temp "$work/tmp" -cache "$work/cache" -storage "$work/storage"
    -recordings "$work/recordings" -certs "$conf/tls")
  fs_log="$work/log/freeswitch.log"
  if [ $# -gt 0 ]; then
    # No fork: the wrapper must own the process that takes the calls.
    "$@" "$fs_bin" -nc -nf "${dirs[@]}" >"$work/fs-start.log" 2>&1 </dev/null &
    fs_pid=$!
  else
    "$fs_bin" -ncwait "${dirs[@]}" >"$work/fs-start.log" 2>&1
    for _ in $(seq "$tries"); do [ -s "$work/run/freeswitch.pid" ] && break; sleep 0.2; done
    fs_pid=$(cat "$work/run/freeswitch.pid" 2>/dev/null)
  fi
  if [ -z "$fs_pid" ] || ! kill -0 "$fs_pid" 2>/dev/null; then
    fs_error="FreeSWITCH did not start: $(cat "$work/fs-start.log"; tail -20 "$fs_log" 2>/dev/null)"
    return 1
  fi
  for _ in $(seq "$tries"); do
    if fscli status 2>/dev/null | grep -q 'UP '; then up=1; break; fi
    kill -0 "$fs_pid" 2>/dev/null || break
    sleep 0.2
  done
  [ -n "$up" ] || { fs_error="FreeSWITCH's event socket does not answer on 127.0.0.1:$esl_port: $(tail -20 "$fs_log")"; return 1; }
}

fs_stop() {
  local _
  [ -n "${fs_pid:-}" ] && kill -0 "$fs_pid" 2>/dev/null || return 0
  "$fs_bin" -stop -run "$work/run" >/dev/null 2>&1
  for _ in $(seq $(( ${1:-10} * 5 ))); do kill -0 "$fs_pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$fs_pid" 2>/dev/null
  wait "$fs_pid" 2>/dev/null
  return 0
}
