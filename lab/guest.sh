#!/usr/bin/env bash
# Runs inside the lab VM (started by lab/vm.sh): prepare the guest, then run the command.
set -u
run=$1
# shellcheck disable=SC1091
source "$run/env"
echo 127 > "$run/rc"

export PATH=$BV_VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Fast Python: stdlib and venv from ext4 images instead of 9p.
for pair in "bvstdlib:$BV_STDLIB" "bvvenv:$BV_VENV"; do
  label=${pair%%:*}; dir=${pair#*:}
  dev=$(blkid -L "$label" 2>/dev/null) && mount -o ro "$dev" "$dir" ||
    echo "lab: image $label not mounted; using 9p (slow)" >&2
done

# udev first: without it /dev/mapper/* and /dev/md/* nodes never appear.
/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
udevadm trigger >/dev/null 2>&1
modprobe loop max_loop=32 2>/dev/null
modprobe -a zfs dm-crypt dm-integrity raid1 raid456 raid10 btrfs xfs ext4 2>/dev/null ||
  echo "lab: some kernel modules did not load" >&2
udevadm settle >/dev/null 2>&1
# The ARC would take half the VM's memory, which also holds the loop files (/tmp is tmpfs):
# cap it so pools, tmpfs and Python never starve each other.
echo $(( 384 * 1024 * 1024 )) > /sys/module/zfs/parameters/zfs_arc_max 2>/dev/null ||
  echo "lab: could not cap the ZFS ARC" >&2
# md throttles check/resync to speed_limit_min (1 MB/s) whenever other I/O runs, and in the
# lab something always does (pytest beside Molecule): loop files in RAM deserve more.
echo 100000 > /proc/sys/dev/raid/speed_limit_min 2>/dev/null

export HOME=/tmp/home
export ANSIBLE_LOCAL_TEMP=/tmp/ansible-local ANSIBLE_REMOTE_TMP=/tmp/ansible-remote
export ANSIBLE_COLLECTIONS_PATH=$BV_WORK/collections
export ANSIBLE_PYTHON_INTERPRETER=$BV_VENV/bin/python
export ANSIBLE_PIPELINING=True ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
export PYTHONPATH=$BV_WORK/collections PYTHONDONTWRITEBYTECODE=1
# Seconds per task and the slowest tasks of every playbook run (lab-only callback).
export ANSIBLE_CALLBACK_PLUGINS=$BV_TOP/lab/ansible/callback_plugins ANSIBLE_CALLBACKS_ENABLED=bv_timer
export BV_IN_LAB=1 BV_TOP BV_WORK BV_VENV BV_FULL
mkdir -p "$HOME" "$ANSIBLE_LOCAL_TEMP" "$ANSIBLE_REMOTE_TMP"

cd "$BV_TOP" || exit 1
bash "$run/cmd"
rc=$?
echo "$rc" > "$run/rc"
exit "$rc"
