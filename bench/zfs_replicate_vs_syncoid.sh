#!/usr/bin/env bash
# Raw replication of one encryption root with 4 children: blindvault.storage.zfs_replicate
# (the module's main() in-process, no Ansible controller) vs the bare `zfs send -w -R | zfs recv`
# pipe vs syncoid, side by side in one VM boot. Three rounds each: full seed, incremental with
# new data, incremental with nothing new. The nothing-new round is each tool's fixed per-run
# overhead. Ours and bare also time the send | recv pipe alone (the module returns each stream's
# seconds), so throughput and fixed cost are reported separately. Ratios matter, not seconds.
#   make bench MB=100   (this script alone: make lab CMD='bash bench/zfs_replicate_vs_syncoid.sh 100')
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
ours() {  # the module's own per-stream seconds go to $work/stream-ours-ROUND
  "$py" - "$1" "$work/stream-ours-$1" <<'PY'
import sys
from ansible_collections.blindvault.storage.tests.run_module import run_module
res = run_module("zfs_replicate", {"source": "bvbsrc/ours", "target": "bvbdst/ours",
                                   "snapshot": sys.argv[1]})
if res.get("failed"):
    sys.exit("zfs_replicate failed: %s" % res["msg"])
with open(sys.argv[2], "w") as f:
    f.write("%.2f" % sum(st.get("seconds") or 0 for st in res["streams"]))
PY
}
bare() {  # the pipe alone is timed into $work/stream-bare-ROUND
  zfs snapshot -r "bvbsrc/bare@$1"
  local start=$EPOCHREALTIME
  if [ -z "${2:-}" ]; then
    zfs send -w -R "bvbsrc/bare@$1" | zfs recv -u bvbdst/bare
  else
    zfs send -w -R -I "@$2" "bvbsrc/bare@$1" | zfs recv -u bvbdst/bare
  fi
  python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" \
    "$start" "$EPOCHREALTIME" > "$work/stream-bare-$1"
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
streams=""
for tool in ours bare; do
  for r in r1 r2 r3; do streams+="$(cat "$work/stream-$tool-$r") "; done
done
python3 - "$mb" "$roots" "$streams" \
  "${t[ours,full]}" "${t[ours,incr]}" "${t[ours,none]}" \
  "${t[bare,full]}" "${t[bare,incr]}" "${t[bare,none]}" \
  "${t[syncoid,full]}" "${t[syncoid,incr]}" "${t[syncoid,none]}" <<'PY'
import sys
mb, roots = int(sys.argv[1]), sys.argv[2]
st = list(map(float, sys.argv[3].split()))
v = list(map(float, sys.argv[4:]))
names = ["blindvault.storage.zfs_replicate (main() in-process)", "bare zfs send -w -R | zfs recv",
         "syncoid --recursive --sendoptions=w"]
print("tree: encryption root + 4 children; full %d MB, incremental +%d MB (random)" % (mb, mb // 2))
print("run = the whole run (ours: Python start-up, reads, snapshot, send, bookmarks, holds; bare:")
print("snapshot + pipe); stream = the send | recv pipe alone (syncoid: not separable)")
print("%-52s %7s %7s %9s | %8s %8s %8s | %9s %9s" % (
    "", "full s", "incr s", "nothing s", "stream f", "stream i", "stream n", "full MB/s", "incr MB/s"))
for i, name in enumerate(names):
    full, incr, none = v[3 * i:3 * i + 3]
    if i < 2:
        sf, si, sn = st[3 * i:3 * i + 3]
        print("%-52s %7.1f %7.1f %9.1f | %8.1f %8.1f %8.1f | %9.1f %9.1f" % (
            name, full, incr, none, sf, si, sn, mb / sf, (mb // 2) / si))
    else:
        print("%-52s %7.1f %7.1f %9.1f | %8s %8s %8s | %9s %9s" % (name, full, incr, none, "-", "-", "-", "-", "-"))
print("fixed cost per run (run - stream), nothing new: ours %.1f s, bare %.1f s" % (
    v[2] - st[2], v[5] - st[5]))
print("child c1's encryptionroot on each target: %s" % roots)
PY
