#!/usr/bin/env bash
# Installs mod_natterbox_sf into a FreeSWITCH: builds it (release) against that FreeSWITCH's
# headers, copies the library under the name FreeSWITCH looks for, and the sample config if
# none is there yet.
#   scripts/install-module.sh /usr/local/freeswitch      (or FREESWITCH_PREFIX=…)
set -euo pipefail
prefix="${1:-${FREESWITCH_PREFIX:-/usr/local/freeswitch}}"
top="$(cd "$(dirname "$0")/.." && pwd)"
mod_dir="${FREESWITCH_MOD_DIR:-$prefix/mod}"
conf_dir="${FREESWITCH_CONF_DIR:-$prefix/conf}"
[ -d "$prefix/include/freeswitch" ] && export FREESWITCH_PREFIX="$prefix"
cd "$top"
cargo build --release -p mod_natterbox_sf
target="${CARGO_TARGET_DIR:-$top/target}"
# FreeSWITCH finds a module by file name: mod_<name>.so exporting mod_<name>_module_interface.
install -D -m 0755 "$target/release/libmod_natterbox_sf.so" "$mod_dir/mod_natterbox_sf.so"
if [ ! -e "$conf_dir/autoload_configs/natterbox_sf.conf.xml" ]; then
  install -D -m 0640 freeswitch-conf/autoload_configs/natterbox_sf.conf.xml \
    "$conf_dir/autoload_configs/natterbox_sf.conf.xml"
fi
echo "installed $mod_dir/mod_natterbox_sf.so"
echo "add <load module=\"mod_natterbox_sf\"/> to $conf_dir/autoload_configs/modules.conf.xml, or: fs_cli -x 'load mod_natterbox_sf'"
