#!/usr/bin/env bash
# CI check of the natterbox-sf package: builds it (scripts/package-deb.sh, which runs lintian),
# installs it with dpkg, checks files, owners and modes, the user and the hand-off permissions,
# then removes and purges it and checks what stays and what goes.
#
#   tests/package/check-deb.sh        (as root, on Debian; no running systemd needed)
#   DEB=path/to.deb tests/package/check-deb.sh   to check a package already built
# The last line is "package: N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
top="$(cd "$(dirname "$0")/../.." && pwd)"

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
not_ok() {
  failed=$((failed + 1)); echo "FAIL - $1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | head -20 | sed 's/^/       /'
  return 0
}
check() { local d="$1"; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
summary() { echo "package: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }
abort() { not_ok "$1" "${2:-}"; summary; }

if [ "$(id -u)" -ne 0 ]; then
  echo "package: SKIPPED (installing a package needs root)"
  exit 0
fi
command -v dpkg >/dev/null || { echo "package: SKIPPED (not a Debian system: no dpkg)"; exit 0; }

# owner:group and octal mode of a path, e.g. "natterbox-sf:freeswitch 710".
perm() { stat -c '%U:%G %a' "$1" 2>/dev/null; }
# has_perm <path> <owner:group mode>
has_perm() {
  local got; got=$(perm "$1")
  [ "$got" = "$2" ] || { echo "       $1 is '$got', expected '$2'"; return 1; }
}
pkg_status() { dpkg-query -W -f='${db:Status-Abbrev}' natterbox-sf 2>/dev/null | tr -d ' '; }

# Start from nothing: an earlier run or a developer's install.
dpkg -P natterbox-sf >/dev/null 2>&1
# postinst creates FreeSWITCH's group when FreeSWITCH's packages have not; purge leaves it (it is
# FreeSWITCH's). This check removes it again if it made it.
group_was_there=""
getent group freeswitch >/dev/null && group_was_there=1

deb="${DEB:-}"
if [ -z "$deb" ]; then
  log=$(mktemp)
  if "$top/scripts/package-deb.sh" >"$log" 2>&1; then
    ok "scripts/package-deb.sh builds the package and lintian passes"
  else
    abort "scripts/package-deb.sh builds the package and lintian passes" "$(tail -30 "$log")"
  fi
  rm -f "$log"
  deb=$(ls "${CARGO_TARGET_DIR:-$top/target}"/debian/natterbox-sf_*.deb 2>/dev/null | head -1)
fi
[ -f "$deb" ] || abort "a package under target/debian" "none found"
check "the package lives under target/debian/" test "$(basename "$(dirname "$deb")")" = debian

# ---------------------------------------------------------------------------------------------
# Install.
out=$(dpkg -i "$deb" 2>&1) || abort "dpkg -i installs it" "$out"
ok "dpkg -i installs it"
check "dpkg says installed" test "$(pkg_status)" = ii

check "the module is where Debian's FreeSWITCH loads modules, 0644 root" \
  has_perm /usr/lib/freeswitch/mod/mod_natterbox_sf.so "root:root 644"
check "the module exports mod_natterbox_sf_module_interface" \
  sh -c 'nm -D --defined-only /usr/lib/freeswitch/mod/mod_natterbox_sf.so | grep -qw mod_natterbox_sf_module_interface'
check "the sidecar is /usr/bin/natterbox-sidecar, 0755 root" has_perm /usr/bin/natterbox-sidecar "root:root 755"
check "the sidecar runs (--version)" sh -c '/usr/bin/natterbox-sidecar --version | grep -q "^natterbox-sidecar "'
check "natterbox-agent-token is installed, 0755" has_perm /usr/bin/natterbox-agent-token "root:root 755"
unit=""
for u in /lib/systemd/system/natterbox-sidecar.service /usr/lib/systemd/system/natterbox-sidecar.service; do
  [ -f "$u" ] && unit=$u
done
check "the systemd unit is installed, 0644 root" has_perm "${unit:-/lib/systemd/system/natterbox-sidecar.service}" "root:root 644"
check "the unit runs the sidecar as natterbox-sf with FreeSWITCH's group" \
  sh -c "grep -qx 'User=natterbox-sf' '$unit' && grep -qx 'Group=freeswitch' '$unit' && ! grep -q 'User=freeswitch' '$unit'"
if command -v systemd-analyze >/dev/null; then
  out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$unit" 2>&1)
  check "systemd-analyze verify is clean for the installed unit" test -z "$(printf '%s' "$out" | grep natterbox-sidecar)"
  [ -z "$(printf '%s' "$out" | grep natterbox-sidecar)" ] || printf '%s\n' "$out" | sed 's/^/       /'
else
  not_ok "systemd-analyze is installed (apt-get install systemd)"
fi
conf=/etc/freeswitch/autoload_configs/natterbox_sf.conf.xml
check "the example config is installed, 0644 root" has_perm "$conf" "root:root 644"
check "the example config is a conffile" \
  sh -c "dpkg-query -W -f='\${Conffiles}' natterbox-sf | grep -q ' $conf '"
check "the example config parses (natterbox-sidecar --check-config gets as far as naming the missing key file)" \
  sh -c "/usr/bin/natterbox-sidecar --check-config --config $conf | grep -q '/etc/natterbox-sf/acme.key'"
check "the README is in /usr/share/doc/natterbox-sf" test -s /usr/share/doc/natterbox-sf/README.md
check "a copyright file is in /usr/share/doc/natterbox-sf" test -s /usr/share/doc/natterbox-sf/copyright

# The user and the directories postinst made.
check "natterbox-sf is a system user (uid < 1000) without a login shell" \
  sh -c 'e=$(getent passwd natterbox-sf) && uid=$(echo "$e" | cut -d: -f3) && [ "$uid" -lt 1000 ] &&
         case $(echo "$e" | cut -d: -f7) in */nologin|*/false) true;; *) false;; esac'
check "natterbox-sf has a group of its own" sh -c "getent group natterbox-sf >/dev/null"
check "the freeswitch group exists" sh -c "getent group freeswitch >/dev/null"
check "natterbox-sf is not in FreeSWITCH's group (the unit's Group= gives the process the group, not the user)" \
  sh -c '! id -nG natterbox-sf | tr " " "\n" | grep -qx freeswitch'
check "/etc/natterbox-sf: root:natterbox-sf 0750 (keys, refresh tokens, agents.json)" \
  has_perm /etc/natterbox-sf "root:natterbox-sf 750"
check "/var/lib/natterbox-sf: natterbox-sf:freeswitch 0710 (FreeSWITCH passes through, cannot list)" \
  has_perm /var/lib/natterbox-sf "natterbox-sf:freeswitch 710"
check "/var/lib/natterbox-sf/tokens: natterbox-sf:freeswitch 0750" \
  has_perm /var/lib/natterbox-sf/tokens "natterbox-sf:freeswitch 750"
if getent passwd freeswitch >/dev/null; then
  check "/var/spool/natterbox-sf: freeswitch:freeswitch 0750 (the module's spool)" \
    has_perm /var/spool/natterbox-sf "freeswitch:freeswitch 750"
else
  check "/var/spool/natterbox-sf: root:freeswitch 0770 until FreeSWITCH's user exists" \
    has_perm /var/spool/natterbox-sf "root:freeswitch 770"
fi

# The hand-off as the unit sets it up: the sidecar's identity (natterbox-sf, group freeswitch,
# UMask 0077) writes a token file with the shared code's modes; FreeSWITCH's group can read it,
# a stranger cannot even reach it.
if command -v setpriv >/dev/null; then
  fs_gid=$(getent group freeswitch | cut -d: -f3)
  sf_uid=$(id -u natterbox-sf)
  check "as the sidecar (natterbox-sf, group freeswitch) a 0640 token file can be written" \
    setpriv --reuid "$sf_uid" --regid "$fs_gid" --clear-groups sh -c \
      'umask 077 && printf "{}" > /var/lib/natterbox-sf/tokens/.check && chmod 0640 /var/lib/natterbox-sf/tokens/.check'
  check "a member of FreeSWITCH's group reads it" \
    sh -c "setpriv --reuid 65534 --regid $fs_gid --clear-groups cat /var/lib/natterbox-sf/tokens/.check >/dev/null"
  check "nobody else can reach it" \
    sh -c '! setpriv --reuid 65534 --regid 65534 --clear-groups cat /var/lib/natterbox-sf/tokens/.check 2>/dev/null'
  check "FreeSWITCH's group cannot list the sidecar's state (outbox, rotated refresh tokens)" \
    sh -c "! setpriv --reuid 65534 --regid $fs_gid --clear-groups ls /var/lib/natterbox-sf >/dev/null 2>&1"
  check "FreeSWITCH's group cannot read /etc/natterbox-sf" \
    sh -c "! setpriv --reuid 65534 --regid $fs_gid --clear-groups ls /etc/natterbox-sf >/dev/null 2>&1"
  rm -f /var/lib/natterbox-sf/tokens/.check
else
  not_ok "setpriv is installed (util-linux)"
fi

# ---------------------------------------------------------------------------------------------
# Upgrade in place (same version again): the admin's config change survives, postinst is
# idempotent.
echo '<!-- edited by the admin -->' >>"$conf"
out=$(dpkg -i --force-confold "$deb" 2>&1)
check "reinstalling over itself works" test "$(pkg_status)" = ii
check "the admin's edit of the conffile survives a reinstall" grep -q 'edited by the admin' "$conf"
check "reinstalling keeps the directory modes" has_perm /var/lib/natterbox-sf "natterbox-sf:freeswitch 710"

# Remove: binaries go; config, user and data stay.
out=$(dpkg -r natterbox-sf 2>&1) || not_ok "dpkg -r removes it" "$out"
check "dpkg -r leaves the package config-files only" test "$(pkg_status)" = rc
check "the module is gone" test ! -e /usr/lib/freeswitch/mod/mod_natterbox_sf.so
check "the sidecar is gone" test ! -e /usr/bin/natterbox-sidecar
check "the unit is gone" sh -c '[ ! -e /lib/systemd/system/natterbox-sidecar.service ] && [ ! -e /usr/lib/systemd/system/natterbox-sidecar.service ]'
check "remove keeps the config" test -f "$conf"
check "remove keeps the user" sh -c "getent passwd natterbox-sf >/dev/null"
check "remove keeps the state and secrets directories" test -d /var/lib/natterbox-sf -a -d /etc/natterbox-sf

# Purge: everything the package and postinst made is gone.
out=$(dpkg -P natterbox-sf 2>&1) || not_ok "dpkg -P purges it" "$out"
check "dpkg -P forgets the package" test -z "$(pkg_status)"
check "purge removes the config" test ! -e "$conf"
check "purge removes the user" sh -c '! getent passwd natterbox-sf'
check "purge removes the user's group" sh -c '! getent group natterbox-sf'
check "purge removes /var/lib/natterbox-sf, /var/spool/natterbox-sf and /etc/natterbox-sf" \
  sh -c '[ ! -e /var/lib/natterbox-sf ] && [ ! -e /var/spool/natterbox-sf ] && [ ! -e /etc/natterbox-sf ]'

if [ -z "$group_was_there" ] && ! getent passwd freeswitch >/dev/null; then
  groupdel freeswitch 2>/dev/null
fi
summary
