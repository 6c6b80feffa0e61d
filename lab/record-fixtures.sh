#!/usr/bin/env bash
# Re-record the unit tests' fixtures from the real tools (run inside the lab VM:
# `make fixtures`). Parsers are tested against what these exact versions print.
set -euo pipefail
out=${1:?usage: record-fixtures.sh OUTDIR}
mkdir -p "$out"
scratch=$(mktemp -d /tmp/fixtures.XXXXXX)
cols=NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN,RO,DIO,LOG-SEC,OFFSET,SIZELIMIT,AUTOCLEAR

# losetup: nothing attached
losetup --list --json --output "$cols" > "$out/losetup-none.json"

# losetup: an ext4-backed device with direct I/O and 4K sectors, a read-only one, one whose
# backing file was deleted, and a path with a space.
truncate -s 64M "$scratch/ext4.img"; mkfs.ext4 -q "$scratch/ext4.img"
mkdir -p "$scratch/mnt"; mount "$scratch/ext4.img" "$scratch/mnt"
truncate -s 8M "$scratch/mnt/dio.img" "$scratch/mnt/ro.img" "$scratch/mnt/gone.img" "$scratch/mnt/with space.img"
d1=$(losetup --find --show --direct-io=on --sector-size 4096 "$scratch/mnt/dio.img")
d2=$(losetup --find --show --read-only "$scratch/mnt/ro.img")
d3=$(losetup --find --show "$scratch/mnt/gone.img"); rm "$scratch/mnt/gone.img"
d4=$(losetup --find --show "$scratch/mnt/with space.img")
losetup --list --json --output "$cols" | sed "s|$scratch|/srv/lab|g" > "$out/losetup-list.json"
stat -c '%n %i %d' "$scratch/mnt/dio.img" | sed "s|$scratch|/srv/lab|g" > "$out/losetup-list.stat"
for d in $d1 $d2 $d3 $d4; do losetup -d "$d"; done
loopdev=$(findmnt -n -o SOURCE "$scratch/mnt")
umount "$scratch/mnt"; losetup -d "$loopdev" 2>/dev/null || true
rm -rf "$scratch"
losetup --version > "$out/VERSIONS"


# zfs: the key-change cases (tests/integration/zfs_scenarios.py), recorded from ZFS 2.1.11.
python "$(dirname "$0")/../tests/integration/zfs_scenarios.py" record "$out"
zfs version >> "$out/VERSIONS"

# md: mdadm --detail --export and blkid of a member (lab/record-md-fixtures.sh)
bash "$(dirname "$0")/record-md-fixtures.sh" "$out"
echo "recorded into $out:"; ls -l "$out"
