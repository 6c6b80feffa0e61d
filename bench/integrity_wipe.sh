#!/usr/bin/env bash
# dm-integrity provisioning time on the same device size, side by side in one VM boot:
# integrity_device wipe: full (integritysetup writes every sector) vs wipe: zero (--no-wipe,
# then a direct-I/O zero fill without a journal) vs wipe: none (--no-wipe only: every sector
# reads as EIO until written), each also done with the bare commands. Ratios matter, not seconds.
#   make lab CMD='bash bench/integrity_wipe.sh 256'   (part of make bench)
set -euo pipefail
mb=${1:-256}
work=$(mktemp -d /tmp/bench.XXXXXX)
loops=()
cleanup() {
  for n in bvw-ours-full bvw-ours-zero bvw-ours-none bvw-bare-full bvw-bare-zero bvw-bare-none; do
    integritysetup close "$n" 2>/dev/null || true
  done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
disk() { truncate -s "${mb}M" "$work/$1.img"; losetup --find --show "$work/$1.img"; }
secs() {  # secs CMD... -> wall seconds of CMD
  local start=$EPOCHREALTIME
  "$@" >/dev/null
  python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$start" "$EPOCHREALTIME"
}
py=${ANSIBLE_PYTHON_INTERPRETER:-python3}
ours() {  # ours WIPE DEV: the module's main() in-process (no Ansible controller)
  "$py" - "$1" "$2" <<'PY'
import sys
from ansible_collections.blindvault.storage.tests.run_module import run_module
res = run_module("integrity_device", {"device": sys.argv[2], "name": "bvw-ours-" + sys.argv[1],
                                      "wipe": sys.argv[1]})
if res.get("failed"):
    sys.exit("integrity_device failed: %s" % res["msg"])
PY
}
bare() {  # bare WIPE DEV: what an admin would type
  local name="bvw-bare-$1"
  case $1 in
    full) integritysetup format --batch-mode --integrity crc32c --sector-size 4096 "$2"
          integritysetup open --integrity crc32c "$2" "$name" ;;
    zero) integritysetup format --batch-mode --integrity crc32c --sector-size 4096 --no-wipe "$2"
          integritysetup open --integrity crc32c --integrity-no-journal "$2" "$name"
          udevadm settle
          dd if=/dev/zero of="/dev/mapper/$name" bs=1M oflag=direct conv=nocreat status=none || true
          udevadm settle
          integritysetup close "$name"
          integritysetup open --integrity crc32c "$2" "$name" ;;
    none) integritysetup format --batch-mode --integrity crc32c --sector-size 4096 --no-wipe "$2"
          integritysetup open --integrity crc32c "$2" "$name" ;;
  esac
}
declare -A t
for w in full zero none; do
  d=$(disk "ours-$w"); loops+=("$d"); t[ours,$w]=$(secs ours "$w" "$d")
  d=$(disk "bare-$w"); loops+=("$d"); t[bare,$w]=$(secs bare "$w" "$d")
done
echo
echo "dm-integrity provisioning of a ${mb} MiB device (crc32c, 4096-byte sectors), seconds:"
printf '%-28s %8s %8s %8s\n' "" "full" "zero" "none"
printf '%-28s %8s %8s %8s\n' "integrity_device (module)" "${t[ours,full]}" "${t[ours,zero]}" "${t[ours,none]}"
printf '%-28s %8s %8s %8s\n' "bare integritysetup (+dd)" "${t[bare,full]}" "${t[bare,zero]}" "${t[bare,none]}"
echo "(none leaves every sector reading as EIO until written: only for members md resyncs fully)"
