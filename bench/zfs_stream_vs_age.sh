#!/usr/bin/env bash
# Stream files on a carrier directory: blindvault.storage.zfs_stream (export and import, the
# module's main() in-process: age encryption, sha256 and a signed manifest, hashes checked before
# receiving) vs `zfs send -w -R | age -r` / `age -d | zfs recv` vs the bare `zfs send > file` /
# `zfs recv < file`, side by side in one VM boot. Two rounds: full, then incremental with new
# data. Throughput (MB of stream per second) and the ratio to the age pipe are what matter.
#   make lab CMD='bash bench/zfs_stream_vs_age.sh 100'
set -euo pipefail
mb=${1:-100}
work=$(mktemp -d /tmp/bench.XXXXXX)
truncate -s 1G "$work/a.vdev" "$work/b.vdev"
zpool create -f -o cachefile=none -R "$work/alt" bvssrc "$work/a.vdev"
zpool create -f -o cachefile=none -R "$work/alt" bvsdst "$work/b.vdev"
trap 'zpool destroy -f bvssrc; zpool destroy -f bvsdst; rm -rf "$work"' EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/key"
age-keygen -o "$work/id" 2> "$work/id.pub"
rcpt=$(grep -o 'age1[a-z0-9]*' "$work/id.pub")
openssl genpkey -algorithm ed25519 -out "$work/sign.pem"
openssl pkey -in "$work/sign.pem" -pubout -out "$work/sign.pub"
mkdir -p "$work/carrier/ours" "$work/carrier/age" "$work/carrier/bare"
for tool in ours age bare; do
  zfs create -o encryption=aes-256-gcm -o keyformat=hex -o "keylocation=file://$work/key" "bvssrc/$tool"
  for c in c1 c2; do zfs create "bvssrc/$tool/$c"; done
done
zfs create bvsdst/in
fill() {  # fill TOOL MB
  local per=$(( $2 / 3 ))
  for d in "" /c1 /c2; do
    head -c "${per}M" /dev/urandom > "$(zfs get -Hp -o value mountpoint "bvssrc/$1$d")/f-$RANDOM"
  done
  zpool sync bvssrc
}
py=${ANSIBLE_PYTHON_INTERPRETER:-python3}
ours() {  # ours exported|imported SNAPSHOT
  "$py" - "$1" "$2" "$work" "$rcpt" <<'PY'
import sys
from ansible_collections.blindvault.storage.tests.run_module import run_module
state, snap, work, rcpt = sys.argv[1:5]
args = {"state": state, "dataset": "bvssrc/ours", "directory": work + "/carrier/ours"}
if state == "exported":
    args.update(target_id="bench", recipients=[rcpt], signing_key=work + "/sign.pem", snapshot=snap)
else:
    args.update(target="bvsdst/in/ours", trusted_signers=[work + "/sign.pub"], identity_file=work + "/id")
res = run_module("zfs_stream", args)
if res.get("failed"):
    sys.exit("zfs_stream %s failed: %s" % (state, res["msg"]))
PY
}
send() {  # send TOOL SNAP [BASE]: the raw -R stream on stdout
  if [ -z "${3:-}" ]; then zfs send -w -R "bvssrc/$1@$2"; else zfs send -w -R -I "@$3" "bvssrc/$1@$2"; fi
}
age_out() { zfs snapshot -r "bvssrc/age@$1"; send age "$1" "${2:-}" | age -r "$rcpt" > "$work/carrier/age/$1.zfs.age"; }
age_in() { age -d -i "$work/id" "$work/carrier/age/$1.zfs.age" | zfs recv -u -x mountpoint bvsdst/in/age; }
bare_out() { zfs snapshot -r "bvssrc/bare@$1"; send bare "$1" "${2:-}" > "$work/carrier/bare/$1.zfs"; }
bare_in() { zfs recv -u -x mountpoint bvsdst/in/bare < "$work/carrier/bare/$1.zfs"; }
secs() {
  local start=$EPOCHREALTIME
  "$@"
  python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$start" "$EPOCHREALTIME"
}
declare -A t
for tool in ours age bare; do fill "$tool" "$mb"; done
t[ours,out1]=$(secs ours exported r1); t[age,out1]=$(secs age_out r1); t[bare,out1]=$(secs bare_out r1)
t[ours,in1]=$(secs ours imported r1); t[age,in1]=$(secs age_in r1); t[bare,in1]=$(secs bare_in r1)
for tool in ours age bare; do fill "$tool" $(( mb / 2 )); done
t[ours,out2]=$(secs ours exported r2); t[age,out2]=$(secs age_out r2 r1); t[bare,out2]=$(secs bare_out r2 r1)
t[ours,in2]=$(secs ours imported r2); t[age,in2]=$(secs age_in r2); t[bare,in2]=$(secs bare_in r2)
sizes=""
for tool in ours age bare; do sizes+="$(du -sm "$work/carrier/$tool" | cut -f1) "; done
python3 - "$mb" "$sizes" \
  "${t[ours,out1]}" "${t[ours,in1]}" "${t[ours,out2]}" "${t[ours,in2]}" \
  "${t[age,out1]}" "${t[age,in1]}" "${t[age,out2]}" "${t[age,in2]}" \
  "${t[bare,out1]}" "${t[bare,in1]}" "${t[bare,out2]}" "${t[bare,in2]}" <<'PY'
import sys
mb, sizes = int(sys.argv[1]), [int(s) for s in sys.argv[2].split()]
v = [float(x) for x in sys.argv[3:]]
rows = [("blindvault.storage.zfs_stream (main() in-process)", v[0:4], sizes[0]),
        ("zfs send -w -R | age -r  /  age -d | zfs recv", v[4:8], sizes[1]),
        ("bare zfs send > file  /  zfs recv < file (no encryption)", v[8:12], sizes[2])]
print("\n## Stream files on a carrier directory (%d MB full + %d MB incremental)\n" % (mb, mb // 2))
print("| seconds | export full | import full | export incr | import incr | carrier MB |")
print("|---|---|---|---|---|---|")
for name, s, size in rows:
    print("| %s | %s | %s | %s | %s | %d |" % ((name,) + tuple("%.1f" % x for x in s) + (size,)))
ours, age = rows[0][1], rows[1][1]
print("\nours / age pipe: export %.2fx, import %.2fx (full); %.2fx, %.2fx (incremental)"
      % (ours[0] / age[0], ours[1] / age[1], ours[2] / age[2], ours[3] / age[3]))
PY
