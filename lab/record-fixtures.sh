#!/usr/bin/env bash
# Re-record the unit tests' fixtures from the real tools (run inside the lab VM:
# `make fixtures`). Parsers are tested against what these exact versions print.
set -euo pipefail
out=${1:?usage: record-fixtures.sh OUTDIR [PART...]   (parts: losetup zfs integrity md; default all)}
shift
parts=" ${*:-losetup zfs integrity md} "
mkdir -p "$out"
scratch=$(mktemp -d /tmp/fixtures.XXXXXX)
cols=NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN,RO,DIO,LOG-SEC,OFFSET,SIZELIMIT,AUTOCLEAR

if [[ $parts == *" losetup "* ]]; then
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
fi


if [[ $parts == *" zfs "* ]]; then
# zfs: the key-change cases (tests/integration/zfs_scenarios.py), recorded from ZFS 2.1.11.
python "$(dirname "$0")/../tests/integration/zfs_scenarios.py" record "$out"
zfs version >> "$out/VERSIONS"
fi

if [[ $parts == *" integrity "* ]]; then
# dm-integrity: a journal-mode mapping, a bitmap-mode one that has caught corruption, a
# no-journal 512-byte-sector one; dmsetup table/status of all three and one superblock dump.
mkdir -p "$out/integrity"
scratch=$(mktemp -d /tmp/fixtures.XXXXXX)
truncate -s 32M "$scratch/i0" "$scratch/i1" "$scratch/i2"
i0=$(losetup --find --show "$scratch/i0"); i1=$(losetup --find --show "$scratch/i1")
i2=$(losetup --find --show "$scratch/i2")
integritysetup format --batch-mode --integrity crc32c --tag-size 4 --sector-size 4096 --no-wipe "$i0"
integritysetup format --batch-mode --integrity crc32c --tag-size 4 --sector-size 4096 --no-wipe "$i1"
integritysetup format --batch-mode --integrity sha256 --sector-size 512 --no-wipe "$i2"
integritysetup open --integrity crc32c "$i0" int0
integritysetup open --integrity crc32c --integrity-bitmap-mode "$i1" int1
integritysetup open --integrity sha256 --integrity-no-journal "$i2" int2
udevadm settle
dd if=/dev/zero of=/dev/mapper/int1 bs=1M count=8 oflag=direct status=none
dd if=/dev/urandom of="$i1" bs=1M seek=4 count=1 oflag=direct conv=notrunc status=none
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/mapper/int1 of=/dev/null bs=1M count=8 iflag=direct status=none || true
dmsetup table --target integrity > "$out/integrity/dmsetup-table.txt"
dmsetup status --target integrity > "$out/integrity/dmsetup-status.txt"
integritysetup dump "$i0" | sed "s|$i0|/dev/loop0|" > "$out/integrity/dump.txt"
integritysetup status int1 | sed -e "s|$i1|/dev/loop1|" -e "s|$scratch|/srv/lab|" > "$out/integrity/status-int1.txt"
for n in int0 int1 int2; do integritysetup close "$n"; done
dmsetup table --target integrity > "$out/integrity/dmsetup-none.txt"
losetup -d "$i0" "$i1" "$i2"; rm -rf "$scratch"
integritysetup --version >> "$out/VERSIONS"
fi

if [[ $parts == *" md "* ]]; then
# md: mdadm --detail --export and blkid of a member (lab/record-md-fixtures.sh)
bash "$(dirname "$0")/record-md-fixtures.sh" "$out"
fi
if [[ $parts == *" zfs "* ]]; then
# sendstream: the first records of real raw streams (zfs_stream's allow_unsigned reads them)
mkdir -p "$out/sendstream"
scratch=$(mktemp -d /tmp/fixtures-zfs.XXXXXX)
truncate -s 128M "$scratch/d.img"
zpool create -f -o cachefile=none -R "$scratch/alt" dpool "$scratch/d.img"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$scratch/key"
zfs create -o encryption=aes-256-gcm -o keyformat=hex -o "keylocation=file://$scratch/key" dpool/er
zfs create dpool/er/c
zfs snapshot -r dpool/er@s1
zfs send -w -R dpool/er@s1 | head -c 3000 > "$out/sendstream/raw-R-full.head" || true
zfs send -w dpool/er@s1 | head -c 1000 > "$out/sendstream/raw-plain.head" || true
zpool destroy dpool; rm -rf "$scratch"
fi
echo "recorded into $out:"; ls -l "$out"
