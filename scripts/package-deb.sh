#!/usr/bin/env bash
# Builds the natterbox-sf Debian package: the module (as /usr/lib/freeswitch/mod/
# mod_natterbox_sf.so), the sidecar and its systemd unit, the example config as a conffile; the
# user and directories are made by packaging/deb/postinst. Leaves target/debian/natterbox-sf_*.deb
# and checks it with lintian.
#   scripts/package-deb.sh            (FREESWITCH_PREFIX: build against that FreeSWITCH's headers)
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"
target="${CARGO_TARGET_DIR:-$top/target}"

if ! command -v cargo-deb >/dev/null; then
  echo "package-deb: installing cargo-deb"
  cargo install cargo-deb --locked
fi
if ! command -v lintian >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "package-deb: apt-get install lintian"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq lintian >/dev/null
fi

# Both artefacts in one build; cargo-deb packs them without building again.
cargo build --release -p mod_natterbox_sf -p natterbox-sidecar
rm -f "$target"/debian/natterbox-sf_*.deb
mkdir -p "$top/target/debian-man"
for page in "$top"/packaging/deb/man/*.[18]; do
  gzip -9n <"$page" >"$top/target/debian-man/$(basename "$page").gz"
done
# --strip: the release profile keeps debug info for benchmarks and backtraces; the package does not.
cargo deb -p natterbox-sidecar --no-build --strip --output "$target/debian/"
deb=$(ls "$target"/debian/natterbox-sf_*.deb)

# lintian: errors and warnings fail the build. Overrides, each with its reason, are in
# packaging/deb/lintian-overrides (shipped in the package, where lintian reads them).
lintian --fail-on error,warning --tag-display-limit 0 "$deb"
echo "package-deb: $deb"
