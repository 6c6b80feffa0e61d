#!/usr/bin/env bash
# Inside the lab VM, one boot of tests/faults/powercut.sh each (the disks are host files
# attached as /dev/vdc.. by lab/vm.sh, so they survive the killed VM). One power cut hits both
# cases at once:
#   cut-1   md: the integrity RAID1 playbook on vde/vdf, 48 MiB of random data written through
#           md (hash recorded, synced), then a member replaced by a blank one: a full recovery,
#           slowed right down. send: pools on vdc (site) and vdd (replica), an encrypted group
#           with 160 MB of files (hashes recorded, synced), then the replication playbook -
#           the VM is killed mid-stream, with the md recovery still running
#   cut-2   send: import both pools as a rebooted site would (-f: never exported), run the same
#           playbook again, then load the replica's key and compare every file. md: the same
#           playbook again (waits for the recovery), the data's hash and an md check
#           (mismatch_cnt 0)
set -euo pipefail
step=$1 dir=$2
pb() { ansible-playbook -i localhost, -e "pc_dir=$dir" "$BV_TOP/tests/faults/powercut_send.yml"; }
send_1() {
    zpool create -f -o cachefile=none -O mountpoint=/tmp/bvpcsrc bvpcsrc /dev/vdc
    zpool create -f -o cachefile=none -O mountpoint=none bvpcdst /dev/vdd
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/key"
    zfs create -o encryption=aes-256-gcm -o keyformat=hex -o "keylocation=file://$dir/key" bvpcsrc/vault
    zfs create bvpcsrc/vault/docs
    for i in 1 2 3 4; do
      head -c 20M /dev/urandom > "/tmp/bvpcsrc/vault/f$i.bin"
      head -c 20M /dev/urandom > "/tmp/bvpcsrc/vault/docs/d$i.bin"
    done
    (cd /tmp/bvpcsrc/vault && find . -type f | sort | xargs sha256sum) > "$dir/src.sha"
    zpool sync
    touch "$dir/data-synced"
    # little dirty data: the receive waits for the (throttled) replica disk, not for RAM
    echo $(( 16 << 20 )) > /sys/module/zfs/parameters/zfs_dirty_data_max
    pb
    touch "$dir/send-finished"  # the cut came too late if this exists
}

send_2() {
    zpool import -f -o cachefile=none -d /dev bvpcsrc  # whole disks: zfs partitioned them (vdc1)
    zpool import -f -o cachefile=none -d /dev bvpcdst
    token=$(zfs get -H -o value receive_resume_token bvpcdst/vault 2>/dev/null || echo none)
    echo "${token:0:16}" > "$dir/token-after-cut"
    zfs load-key bvpcsrc/vault  # keylocation=file://: as the site's boot would
    zfs mount -a
    (cd /tmp/bvpcsrc/vault && sha256sum -c --quiet "$dir/src.sha") && touch "$dir/source-intact"
    pb
    zfs load-key -L "file://$dir/key" bvpcdst/vault
    zfs set mountpoint=/tmp/bvpcdst bvpcdst/vault
    zfs mount -a
    (cd /tmp/bvpcdst && sha256sum -c --quiet "$dir/src.sha") && touch "$dir/replica-equal"
    zpool export bvpcdst; zpool export bvpcsrc
}

md_1() {
    ansible-playbook -i localhost, -e "pc_dir=$dir" -e pc_wait=true "$BV_TOP/tests/faults/powercut_md.yml"
    md=$(readlink -f /dev/md/bvpcmd)
    head -c 48M /dev/urandom > /tmp/data
    sha256sum < /tmp/data | cut -d' ' -f1 > "$dir/md.sha"
    dd if=/tmp/data of="$md" bs=1M oflag=direct status=none
    sync
    # member 1 is lost and replaced by a blank one: a full recovery from member 0, slowed down
    mdadm --manage "$md" --fail /dev/mapper/bvpcm1 --remove /dev/mapper/bvpcm1
    mdadm --zero-superblock /dev/mapper/bvpcm1
    echo 100 > /proc/sys/dev/raid/speed_limit_min  # KiB/s: still recovering when the cut comes
    echo 200 > /proc/sys/dev/raid/speed_limit_max
    mdadm --manage "$md" --add /dev/mapper/bvpcm1
    local sys=/sys/block/${md##*/}/md
    for _ in $(seq 60); do
      [ "$(cat "$sys/sync_action")" = recover ] && break
      sleep 0.5
    done
    [ "$(cat "$sys/sync_action")" = recover ] || { echo "no recovery started" >&2; exit 1; }
    cat "$sys/sync_completed" > "$dir/md-recovering"
    # what the recovery is doing, every second, up to the cut (the host reads the last line)
    while sleep 1; do echo "$(cat "$sys/sync_action") $(cat "$sys/sync_completed")" >> "$dir/md-progress"; done &
}

md_2() {
    ansible-playbook -i localhost, -e "pc_dir=$dir" -e pc_wait=true "$BV_TOP/tests/faults/powercut_md.yml"
    md=$(readlink -f /dev/md/bvpcmd)
    cat "/sys/block/${md##*/}/md/degraded" > "$dir/md-degraded-after-rerun"
    [ "$(head -c 48M "$md" | sha256sum | cut -d' ' -f1)" = "$(cat "$dir/md.sha")" ] && touch "$dir/md-data-equal"
    echo check > "/sys/block/${md##*/}/md/sync_action"
    mdadm --wait "$md" || true
    cat "/sys/block/${md##*/}/md/mismatch_cnt" > "$dir/md-mismatch"
    cat "/sys/block/${md##*/}/md/degraded" > "$dir/md-degraded"
    mdadm --stop "$md"
}

case $step in
  cut-1) md_1; send_1; sleep 600 ;;  # the power cut comes during send_1
  cut-2) send_2; md_2 ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
