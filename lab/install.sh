#!/usr/bin/env bash
# Idempotent installer for the lab and the project's tooling. Safe to run on every `make`:
# each step checks first and skips work already done (CI may reuse a machine or get a new one).
#   lab/install.sh host   - Python venv with ansible-core, pytest, molecule, virtme-ng
#   lab/install.sh lab    - Debian packages: stock kernel, ZFS (dkms), cryptsetup, mdadm, qemu...
#   lab/install.sh images - ext4 images of the Python stdlib and the venv for the VM
#   lab/install.sh all    - the three above
#   lab/install.sh bench  - a separate venv with peers to measure against (not part of all)
set -euo pipefail
source "$(dirname "$0")/env.sh"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install] %s\n' "$*" >&2; }

missing_debs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}

ensure_contrib() {
  # ZFS lives in Debian's contrib component; copy URIs and Signed-By from the main source.
  local f=/etc/apt/sources.list.d/blindvault-contrib.sources
  local uri=http://deb.debian.org/debian key=/usr/share/keyrings/debian-archive-keyring.gpg
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    key=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  local want
  want=$(printf 'Types: deb\nURIs: %s\nSuites: bookworm\nComponents: contrib\nSigned-By: %s\n' "$uri" "$key")
  [ "$(cat "$f" 2>/dev/null)" = "$want" ] && return 0
  printf '%s\n' "$want" > "$f"
  BV_APT_UPDATED=
}

BV_APT_UPDATED=
apt_install() {
  local todo
  todo=$(missing_debs "$@")
  [ -z "$todo" ] && return 0
  log "apt: installing ${todo//$'\n'/ }"
  if [ -z "$BV_APT_UPDATED" ]; then apt-get update -qq; BV_APT_UPDATED=1; fi
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $todo >/dev/null
}

newest_kernel() {
  find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's|^vmlinuz-||' | sort -V | tail -n1
}

install_lab() {
  ensure_contrib
  apt_install qemu-system-x86 linux-image-amd64 linux-headers-amd64 cryptsetup-bin dmsetup mdadm \
    busybox-static udev kmod e2fsprogs btrfs-progs xfsprogs age sanoid strace util-linux \
    shellcheck
  local kver
  kver=$(newest_kernel)
  [ -n "$kver" ] || { log "no kernel in /boot"; exit 1; }
  apt_install "linux-headers-$kver" dkms zfs-dkms zfsutils-linux
  if ! ls "/lib/modules/$kver/updates/dkms/zfs.ko"* >/dev/null 2>&1; then
    log "dkms: building zfs for $kver"
    dkms autoinstall -k "$kver" >/dev/null
  fi
  ls "/lib/modules/$kver/updates/dkms/zfs.ko"* >/dev/null
  log "lab kernel $kver with $(dpkg-query -W -f='zfs-dkms ${Version}' zfs-dkms)"
}

install_host() {
  if [ ! -x "$BV_VENV/bin/python" ] || [ ! -f "$BV_VENV/.complete" ]; then
    log "venv: creating $BV_VENV from $BV_BASE_PY"
    rm -rf "$BV_VENV"
    mkdir -p "$BV_HOME"
    "$BV_BASE_PY" -m venv "$BV_VENV"
    "$BV_VENV/bin/pip" install -q --disable-pip-version-check -r "$BV_TOP/lab/requirements.txt" \
      2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    touch "$BV_VENV/.complete"
  fi
  # ansible-test --venv bootstraps pip with a script from a host this workplace cannot reach:
  # give it our stand-in under the cache name it looks for.
  local pipver cache
  pipver=$("$BV_VENV/bin/python" -c 'from ansible_test._internal.python_requirements import get_venv_packages
class P: version = "3.11"
print(get_venv_packages(P)["pip"])')
  cache=$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py
  if ! cmp -s "$BV_TOP/lab/get_pip_offline.py" "$cache"; then
    mkdir -p "$(dirname "$cache")"
    cp "$BV_TOP/lab/get_pip_offline.py" "$cache"
  fi
}

# An ext4 image of DIR, labelled LABEL, rebuilt when STAMP (a content key) changes.
build_image() {
  local label=$1 dir=$2 stamp=$3 img=$BV_IMAGES/$1.img
  if [ -f "$img" ] && [ "$(cat "$img.stamp" 2>/dev/null)" = "$stamp" ]; then return 0; fi
  log "image: $label from $dir"
  mkdir -p "$BV_IMAGES"
  local mb
  mb=$(du -sm "$dir" | cut -f1)
  rm -f "$img"
  truncate -s "$(( mb * 13 / 10 + 64 ))M" "$img"
  mke2fs -q -t ext4 -L "$label" -N $(( $(find "$dir" | wc -l) + 4096 )) -d "$dir" "$img"
  echo "$stamp" > "$img.stamp"
}

install_images() {
  # The VM reads the host's root over 9p (~1 ms per stat): Python's stdlib and the venv
  # go on ext4 images mounted over the same paths inside the VM (lab/guest.sh).
  local stdlib
  stdlib=$("$BV_BASE_PY" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  local tmp=$BV_IMAGES/stdlib-tree
  local key
  key="$stdlib $(stat -c %Y "$stdlib")"
  if [ "$(cat "$BV_IMAGES/bvstdlib.img.stamp" 2>/dev/null)" != "$key" ]; then
    rm -rf "$tmp"; mkdir -p "$tmp"
    # The venv never uses the base interpreter's site-packages: leave them (and the
    # stdlib's own test suite) out of the image.
    tar -C "$stdlib" --exclude=./site-packages --exclude=./test -cf - . | tar -C "$tmp" -xf -
    mkdir -p "$tmp/site-packages"
    build_image bvstdlib "$tmp" "$key"
    rm -rf "$tmp"
  fi
  build_image bvvenv "$BV_VENV" "$BV_VENV $(stat -c %Y "$BV_VENV/.complete")"
}

install_bench() {
  # Peers for benchmarks only (community.general comes with the `ansible` package): a venv of
  # its own, so make test never pays for it.
  local venv=$BV_HOME/bench-venv
  if [ ! -f "$venv/.complete" ]; then
    log "bench venv: ansible (community.general) in $venv"
    rm -rf "$venv"
    "$BV_BASE_PY" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'ansible-core>=2.19,<2.20' \
      'ansible>=12,<13' 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    touch "$venv/.complete"
  fi
}

what=${1:-all}
start=$SECONDS
case $what in
  host) install_host ;;
  lab) install_lab ;;
  images) install_host; install_images ;;
  all) install_host; install_lab; install_images ;;
  bench) install_bench ;;
  *) echo "usage: $0 host|lab|images|all|bench" >&2; exit 2 ;;
esac
log "$what: done in $(( SECONDS - start )) s"
