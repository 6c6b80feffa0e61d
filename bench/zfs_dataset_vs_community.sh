#!/usr/bin/env bash
# Declared property on N existing datasets: blindvault.storage.zfs_dataset (list form, one task)
# vs community.general.zfs (a task looped over N items) vs one bare `zfs set`. Same tree shape,
# same change, one VM boot; prints wall times and zfs process counts. Ratios matter, not seconds.
# The peer's loop costs ~13 s per item in the VM, so it runs over the first PEER_N datasets
# (default: N, at most 20) and its time for N is extrapolated per item (said in the output).
#   make lab CMD='bash bench/zfs_dataset_vs_community.sh 200 20'
# Needs the bench venv (ansible, for community.general): bench/install.sh makes it on the host.
set -euo pipefail
n=${1:-10}
peer_n=${2:-$(( n < 20 ? n : 20 ))}
bench_venv=${BV_BENCH_VENV:-/opt/blindvault-lab/bench-venv}
work=$(mktemp -d /tmp/bench.XXXXXX)
truncate -s 512M "$work/vdev"
zpool create -f -o cachefile=none -R "$work/alt" bvbench "$work/vdev"
trap 'zpool destroy -f bvbench; rm -rf "$work"' EXIT
for tree in ours peer bare; do
  zfs create "bvbench/$tree"
  count=$n; [ "$tree" = peer ] && count=$peer_n
  for i in $(seq -w 1 "$n" | head -n "$count"); do zfs create "bvbench/$tree/d$i"; done
done

# PATH shim counting zfs processes
mkdir -p "$work/shim"
printf '#!/bin/sh\necho "$*" >> %s/zfs.log\nexec %s "$@"\n' "$work" "$(command -v zfs)" > "$work/shim/zfs"
chmod +x "$work/shim/zfs"
export PATH="$work/shim:$PATH"

items() { for i in $(seq -w 1 "$n"); do printf -- '- {name: bvbench/%s/d%s}\n' "$1" "$i"; done; }
cat > "$work/ours.yml" <<YML
- hosts: localhost
  gather_facts: false
  tasks:
    - blindvault.storage.zfs_dataset:
        properties: {compression: lz4}
        datasets:
$(items ours | sed 's/^/          /')
YML
cat > "$work/peer.yml" <<YML
- hosts: localhost
  gather_facts: false
  tasks:
    - community.general.zfs:
        name: "{{ item }}"
        state: present
        extra_zfs_properties: {compression: lz4}
      loop: [$(for i in $(seq -w 1 "$n" | head -n "$peer_n"); do printf 'bvbench/peer/d%s, ' "$i"; done)]
YML
cat > "$work/empty.yml" <<'YML'
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: start-up only}
YML

run() {  # run NAME CMD... -> "seconds processes"
  : > "$work/zfs.log"
  local start=$EPOCHREALTIME name=$1
  shift
  "$@" > "$work/$name.out" 2>&1 || { cat "$work/$name.out"; exit 1; }
  python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" \
    "$start" "$EPOCHREALTIME" | tr '\n' ' '
  wc -l < "$work/zfs.log"
}
pb() { "$bench_venv/bin/ansible-playbook" -i localhost, -c local "$work/$1.yml"; }
read -r t_empty _ < <(run empty pb empty)
read -r t_ours p_ours < <(run ours pb ours)
read -r t_peer p_peer < <(run peer pb peer)
bare_list=$(for i in $(seq -w 1 "$n"); do printf 'bvbench/bare/d%s ' "$i"; done)
# shellcheck disable=SC2086
read -r t_bare p_bare < <(run bare zfs set compression=lz4 $bare_list)
for t in ours peer bare; do  # the first dataset is in every tree, the peer's first PEER_N included
  [ "$(zfs get -Hp -o value compression "bvbench/$t/d$(seq -w 1 "$n" | head -n 1)")" = lz4 ] || { echo "$t did not apply"; exit 1; }
done
python3 - "$n" "$peer_n" "$t_empty" "$t_ours" "$p_ours" "$t_peer" "$p_peer" "$t_bare" "$p_bare" <<'PY'
import sys
n, peer_n, empty, ours, p_ours, peer, p_peer, bare, p_bare = sys.argv[1:]
n, peer_n = int(n), int(peer_n)
empty, ours, peer, bare = map(float, (empty, ours, peer, bare))
task_ours, task_peer = ours - empty, peer - empty
per_item, procs_per_item = task_peer / peer_n, int(p_peer) / peer_n
print("datasets: %d (playbook start-up alone: %.1f s)" % (n, empty))
print("%-52s %9s %11s %9s" % ("", "wall s", "s/dataset", "zfs procs"))
print("%-52s %9.1f %11.2f %9s" % ("blindvault.storage.zfs_dataset (1 task, %d items)" % n, task_ours, task_ours / n, p_ours))
print("%-52s %9.1f %11.2f %9s" % ("community.general.zfs (loop, %d items measured)" % peer_n, task_peer, per_item, p_peer))
if peer_n != n:
    print("%-52s %9.1f %11.2f %9.0f" % ("community.general.zfs, %d items (extrapolated)" % n,
                                         per_item * n, per_item, procs_per_item * n))
print("%-52s %9.1f %11.2f %9s" % ("bare zfs set (1 process, %d datasets)" % n, bare, bare / n, p_bare))
print("ratio community.general.zfs / zfs_dataset at %d datasets: %.1fx" % (n, per_item * n / task_ours))
PY
