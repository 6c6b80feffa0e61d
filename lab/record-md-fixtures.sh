#!/usr/bin/env bash
# md fixtures for the unit tests (run inside the lab VM; record-fixtures.sh calls it):
# mdadm --detail --export of a RAID5 with a bitmap, healthy and with a member marked faulty,
# and blkid -p of a member.
set -euo pipefail
out=${1:?usage: record-md-fixtures.sh OUTDIR}
mkdir -p "$out"
scratch=$(mktemp -d /tmp/mdfixtures.XXXXXX)
devs=()
for i in 0 1 2; do
  truncate -s 64M "$scratch/m$i.img"
  devs+=("$(losetup --find --show "$scratch/m$i.img")")
done
mdadm --create /dev/md/fx5 --run --homehost=any --level=5 --raid-devices=3 --chunk=64 \
  --bitmap=internal --assume-clean "${devs[@]}" 2>/dev/null
udevadm settle
mdadm --detail --export /dev/md/fx5 > "$out/mdadm-detail-export.txt"
blkid -p -o export "${devs[0]}" > "$out/blkid-md-member.txt"
mdadm --manage /dev/md/fx5 --fail "${devs[1]}" 2>/dev/null
mdadm --detail --export /dev/md/fx5 > "$out/mdadm-detail-export-faulty.txt"
mdadm --stop /dev/md/fx5 2>/dev/null
udevadm settle
for d in "${devs[@]}"; do losetup -d "$d"; done
rm -rf "$scratch"
mdadm --version 2>&1 | head -n1 >> "$out/VERSIONS"
