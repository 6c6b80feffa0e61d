#!/usr/bin/env bash
# Raw replication of one encryption root with 4 children: blindvault.storage.zfs_replicate
# (the module's main() in-process, no Ansible controller) vs the bare `zfs send -w -R | zfs recv`
# pipe vs syncoid, side by side in one VM boot. Three rounds each: full seed, incremental with
# new data, incremental with nothing new. The nothing-new round is each tool's fixed per-run
# overhead; stream throughput is bytes / (round time - that overhead). Ratios matter, not seconds.
#   make bench-replicate MB=100   (or: make lab CMD='bash bench/zfs_replicate_vs_syncoid.sh 100')
set -euo pipefail
mb=${1:-100}
work=$(mktemp -d /tmp/bench.XXXXXX)
truncate -s 1G "$work/a.vdev" "$work/b.vdev"
zpool create -f -o cachefile=none -R "$work/alt" bvbsrc "$work/a.vdev"
zpool create -f -o cachefile=none -R "$work/alt" bvbdst "$work/b.vdev"
trap 'zpool destroy -f bvbsrc; zpool destroy -f bvbdst; rm -rf "$work"' EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/key"
for tool in ours bare syncoid; do
  zfs create -o encryption=aes-256-gcm -o keyformat=hex -o "keylocation=file://$work/key" "bvbsrc/$tool"
  for c in c1 c2 c3 c4; do zfs create "bvbsrc/$tool/$c"; done
done
fill() {  # fill TOOL MB: random data spread over the tree
  local per=$(( $2 / 5 ))
  for d in "" /c1 /c2 /c3 /c4; do
    head -c "${per}M" /dev/urandom > "$(zfs get -Hp -o value mountpoint "bvbsrc/$1$d")/f-$RANDOM"
  done
  zpool sync bvbsrc
}
py=${ANSIBLE_PYTHON_INTERPRETER:-python3}
ours() {
  "$py" - "$1" <<'PY'
import sys
from ansible_collections.blindvault.storage.tests.run_module import run_module
res = run_module("zfs_replicate", {"source": "bvbsrc/ours", "target": "bvbdst/ours",
                                   "snapshot": sys.argv[1]})
if res.get("failed"):
    sys.exit("zfs_replicate failed: %s" % res["msg"])
PY
}
bare() {
  zfs snapshot -r "bvbsrc/bare@$1"
  if [ -z "${2:-}" ]; then
    zfs send -w -R "bvbsrc/bare@$1" | zfs recv -u bvbdst/bare
  else
    zfs send -w -R -I "@$2" "bvbsrc/bare@$1" | zfs recv -u bvbdst/bare
  fi
}
syncoid_run() { syncoid --quiet --recursive --sendoptions=w bvbsrc/syncoid bvbdst/syncoid >/dev/null; }
secs() {  # secs CMD... -> wall seconds
  local start=$EPOCHREALTIME
  "$@"
  python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$start" "$EPOCHREALTIME"
}
declare -A t
for tool in ours bare syncoid; do fill "$tool" "$mb"; done
t[ours,full]=$(secs ours r1); t[bare,full]=$(secs bare r1); t[syncoid,full]=$(secs syncoid_run)
for tool in ours bare syncoid; do fill "$tool" $(( mb / 2 )); done
t[ours,incr]=$(secs ours r2); t[bare,incr]=$(secs bare r2 r1); t[syncoid,incr]=$(secs syncoid_run)
t[ours,none]=$(secs ours r3); t[bare,none]=$(secs bare r3 r2); t[syncoid,none]=$(secs syncoid_run)
roots=""
for tool in ours bare syncoid; do
  roots+="$tool=$(zfs get -Hp -o value encryptionroot "bvbdst/$tool/c1") "
done
python3 - "$mb" "$roots" \
  "${t[ours,full]}" "${t[ours,incr]}" "${t[ours,none]}" \
  "${t[bare,full]}" "${t[bare,incr]}" "${t[bare,none]}" \
  "${t[syncoid,full]}" "${t[syncoid,incr]}" "${t[syncoid,none]}" <<'PY'
import sys
mb, roots = int(sys.argv[1]), sys.argv[2]
v = list(map(float, sys.argv[3:]))
rows = {"blindvault.storage.zfs_replicate (main() in-process)": v[0:3],
        "bare zfs send -w -R | zfs recv": v[3:6], "syncoid --recursive --sendoptions=w": v[6:9]}
print("tree: encryption root + 4 children; full %d MB, incremental +%d MB (random)" % (mb, mb // 2))
print("%-52s %8s %8s %9s %10s %10s" % ("", "full s", "incr s", "nothing s", "full MB/s", "incr MB/s"))
for name, (full, incr, none) in rows.items():
    def tput(size, t):
        return size / (t - none) if t > none + 0.5 else float("nan")
    print("%-52s %8.1f %8.1f %9.1f %10.1f %10.1f" % (name, full, incr, none, tput(mb, full),
                                                       tput(mb // 2, incr)))
print("child c1's encryptionroot on each target: %s" % roots)
PY
