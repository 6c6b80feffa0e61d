#!/usr/bin/env bash
# Run a command inside the throwaway lab VM and exit with its status.
#   lab/vm.sh 'CMD'      (what `make lab CMD='...'` calls)
# The VM boots the newest installed stock Debian kernel under TCG (virtme-ng), sees the
# host's root read-only (over 9p) with the checkout and the per-checkout work dir writable,
# and gets Python's stdlib and the venv as read-only ext4 disk images (fast imports; several
# VMs may share them). CMD runs as root in the checkout, after lab/guest.sh started udev and
# loaded ZFS, dm-crypt, dm-integrity and md. Nothing here touches the host's block devices.
set -euo pipefail
source "$(dirname "$0")/env.sh"
if [ $# -lt 1 ] || [ -z "$1" ]; then echo "usage: $0 'COMMAND'" >&2; exit 2; fi

"$BV_TOP/lab/install.sh" all
# The newest installed kernel that has a zfs.ko built for it.
kver=$(find /lib/modules -path '*/updates/dkms/zfs.ko*' | cut -d/ -f4 | sort -V | tail -n1)
if [ -z "$kver" ] || [ ! -f "/boot/vmlinuz-$kver" ]; then
  echo "lab: no kernel with zfs.ko; run lab/install.sh lab" >&2; exit 2
fi

bv_link_collection >/dev/null

run=$(mktemp -d "$BV_WORK/run.XXXXXX")
trap 'rm -rf "$run"' EXIT
printf '%s\n' "$1" > "$run/cmd"
stdlib=$("$BV_BASE_PY" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
cat > "$run/env" <<ENV
BV_TOP=$(printf %q "$BV_TOP")
BV_WORK=$(printf %q "$BV_WORK")
BV_VENV=$(printf %q "$BV_VENV")
BV_STDLIB=$(printf %q "$stdlib")
BV_RUN=$(printf %q "$run")
BV_FULL=$(printf %q "${BV_FULL:-}")
ENV

mem=${BV_LAB_MEMORY:-4G}  # pytest and the Molecule batch run side by side
cpus=${BV_LAB_CPUS:-2}
# BV_LAB_DISKS: host image files attached as /dev/vdc, /dev/vdd, ... in order (they outlive the
# VM: the power-cut tests kill it and boot again on the same files). An entry may carry QEMU
# drive options after a comma, e.g. FILE,throttling.bps-write=4194304 (a slow disk).
disks=()
for d in ${BV_LAB_DISKS:-}; do disks+=(--qemu-opts="-drive file=$d,format=raw,if=virtio"); done
export PATH="$BV_VENV/bin:$PATH"
set +e
setsid -w vng --disable-kvm --run "/boot/vmlinuz-$kver" --memory "$mem" --cpus "$cpus" \
  --rwdir "$BV_TOP" --rwdir "$BV_WORK" \
  --qemu-opts="-drive file=$BV_IMAGES/bvstdlib.img,format=raw,if=virtio,readonly=on" \
  --qemu-opts="-drive file=$BV_IMAGES/bvvenv.img,format=raw,if=virtio,readonly=on" \
  "${disks[@]}" --exec "bash $BV_TOP/lab/guest.sh $run" </dev/null 2> >(cat >&2) | cat
# (Pipes on both: QEMU opens the guest's stdout and stderr as files with O_TRUNC; when ours
# are a log file that would wipe everything printed before the VM started.)
rc=${PIPESTATUS[0]}
set -e
# vng reports the guest command's status; the guest also leaves it in a file, which
# survives a vng that loses it.
if [ -f "$run/rc" ]; then rc=$(cat "$run/rc"); fi
exit "$rc"
