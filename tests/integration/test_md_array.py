"""md_array against the real kernel: RAID1/RAID5 on 64 MiB loop devices over files in the VM's
/tmp. Fresh sparse files read as zeros, so ``assume_clean`` is valid on them and skips the
initial resync (one test creates without it and waits for the resync instead)."""

import hashlib
import os
import subprocess

import pytest

from helpers import sh

M = 1 << 20


def md_sysfs(result, attr):
    with open("/sys/block/%s/md/%s" % (os.path.basename(result["kernel_device"]), attr)) as f:
        return f.read().strip()


def test_raid1_check_mode_create_and_second_run_unchanged(module, disks, exec_log):
    devs = disks(2)
    args = {"name": "bvr1", "level": 1, "devices": devs, "assume_clean": True, "bitmap": "internal"}
    dry = module("md_array", args, check=True, diff=True)
    assert not dry.failed, dry
    assert dry["changed"] and [a["action"] for a in dry["actions"]] == ["create"]
    assert "--assume-clean" in dry["actions"][0]["command"]
    assert dry["diff"]["before"] == {"state": "absent"} and dry["diff"]["after"]["state"] == "running"
    assert not os.path.exists("/dev/md/bvr1") and not exec_log("mdadm")

    r = module("md_array", args, diff=True)
    assert not r.failed, r
    assert r["changed"] and os.path.exists("/dev/md/bvr1")
    assert r["device"] == "/dev/md/bvr1" and r["kernel_device"].startswith("/dev/md")
    assert os.path.realpath("/dev/md/bvr1") == r["kernel_device"]
    assert r["level"] == 1 and r["degraded"] is False and r["uuid"]
    assert r["sync_action"] == "idle" and r["mismatch_cnt"] == 0
    assert sorted(m["device"] for m in r["members"]) == sorted(devs)
    assert all(m["state"] == "in_sync" and m["errors"] == 0 for m in r["members"])
    assert md_sysfs(r, "bitmap/location") != "none"

    before = len(exec_log("mdadm"))
    again = module("md_array", args)
    assert not again["changed"] and again["actions"] == [] and again["uuid"] == r["uuid"]
    assert exec_log("mdadm")[before:] == ["mdadm --detail --export /dev/md/bvr1"]  # one process


def test_raid5_without_assume_clean_waits_for_resync_then_checks_clean(module, disks):
    devs = disks(3)
    r = module("md_array", {"name": "bvr5", "level": 5, "devices": devs, "chunk": "64K",
                            "wait": True})
    assert not r.failed, r
    assert "--assume-clean" not in r["actions"][0]["command"]
    assert r["sync_action"] == "idle" and r["degraded"] is False and r["level"] == 5
    assert md_sysfs(r, "chunk_size") == str(64 * 1024)

    c = module("md_array", {"name": "bvr5", "action": "check", "wait": True})
    assert not c.failed, c
    assert c["changed"] and c["sync_action"] == "idle" and c["mismatch_cnt"] == 0

    same = module("md_array", {"name": "bvr5", "level": 5, "devices": devs, "chunk": "64K"})
    assert not same["changed"]


def test_refuses_members_with_a_filesystem_unless_forced(module, disks):
    devs = disks(2)
    sh("mkfs.ext4", "-q", devs[1])
    r = module("md_array", {"name": "bvfs", "level": 1, "devices": devs, "assume_clean": True})
    assert r.failed and "ext4 signature" in r["msg"] and devs[1] in r["msg"], r
    assert "force: true" in r["msg"]
    assert not os.path.exists("/dev/md/bvfs")
    assert "TYPE=ext4" in sh("blkid", "-p", "-o", "export", devs[1]).stdout  # untouched

    forced = module("md_array", {"name": "bvfs", "level": 1, "devices": devs,
                                 "assume_clean": True, "force": True})
    assert not forced.failed and forced["changed"], forced
    assert "force" in forced["actions"][0]["reason"]


def test_stop_assemble_and_absent(module, disks):
    devs = disks(2)
    base = {"name": "bvsa", "devices": devs}
    r = module("md_array", dict(base, level=1, assume_clean=True))
    uuid = r["uuid"]

    dry = module("md_array", dict(base, state="stopped"), check=True)
    assert dry["changed"] and os.path.exists("/dev/md/bvsa")
    s = module("md_array", dict(base, state="stopped"))
    assert s["changed"] and not os.path.exists("/dev/md/bvsa") and s["device"] is None
    assert not module("md_array", dict(base, state="stopped"))["changed"]

    a = module("md_array", dict(base, state="assembled"))
    assert a["changed"] and [x["action"] for x in a["actions"]] == ["assemble"], a
    assert a["uuid"] == uuid and a["degraded"] is False
    assert not module("md_array", dict(base, state="assembled"))["changed"]

    # (present over stopped members assembles too, never re-creates: the same plan step,
    # covered by the unit tests to keep this file's VM time down)
    assert not module("md_array", dict(base, level=1))["changed"]

    wrong = module("md_array", {"name": "bvsa", "level": 5, "devices": devs + disks(1)})
    assert wrong.failed and "never reshapes" in wrong["msg"] and "RAID1" in wrong["msg"], wrong

    refused = module("md_array", dict(base, state="absent"))
    assert refused.failed and "force: true" in refused["msg"] and os.path.exists("/dev/md/bvsa")
    gone = module("md_array", dict(base, state="absent", force=True))
    assert gone["changed"] and not os.path.exists("/dev/md/bvsa"), gone
    for d in devs:
        assert sh("blkid", "-p", d, check=False).returncode == 2  # superblock zeroed
    assert not module("md_array", dict(base, state="absent"))["changed"]


def test_bad_input_fails_before_anything_runs(module, disks, exec_log):
    """One test for all cases (each is also a host unit test): the lab only proves that real
    devices change nothing."""
    devs = disks(2)
    for args, message in [
        ({"level": 5, "devices": devs}, "RAID5 needs at least 3 devices"),
        ({"level": 1, "devices": [devs[0], "/dev/nonexistent9"]}, "does not exist"),
        ({"level": 1, "devices": [devs[0], devs[1], devs[0]]}, "more than once"),
        ({"level": 1, "devices": devs, "chunk": "64K"}, "chunk does not apply"),
    ]:
        r = module("md_array", dict(args, name="bvbad"))
        assert r.failed and message in r["msg"], r
        assert "Traceback" not in r["msg"]
    assert exec_log("mdadm") == [] and not os.path.exists("/dev/md/bvbad")
    for d in devs:
        assert sh("blkid", "-p", d, check=False).returncode == 2  # still blank


@pytest.mark.parametrize("bitmap", ["internal", "none"])
def test_readd_failed_brings_a_kicked_member_back(module, disks, bitmap):
    devs = disks(3)
    args = {"name": "bvra", "level": 5, "devices": devs, "assume_clean": True, "bitmap": bitmap}
    r = module("md_array", args)
    assert not r.failed, r
    sh("dd", "if=/dev/urandom", "of=/dev/md/bvra", "bs=1M", "count=4", "oflag=direct")
    sh("mdadm", "--manage", "/dev/md/bvra", "--fail", devs[1])
    # writes while it is out: the member falls behind
    sh("dd", "if=/dev/urandom", "of=/dev/md/bvra", "bs=1M", "count=2", "seek=8", "oflag=direct")

    seen = module("md_array", args)
    assert not seen["changed"] and seen["degraded"] is True
    faulty = [m for m in seen["members"] if "faulty" in m["state"]]
    assert [m["device"] for m in faulty] == [devs[1]]

    back = module("md_array", dict(args, readd_failed=True, wait=True), diff=True)
    assert not back.failed, back
    assert [a["action"] for a in back["actions"]] == ["remove", "re-add"]
    assert back["degraded"] is False and back["sync_action"] == "idle", back
    assert all(m["state"] == "in_sync" for m in back["members"]), back["members"]
    assert back["notes"] and devs[1] in back["notes"][0]
    again = module("md_array", dict(args, readd_failed=True))
    assert not again["changed"]
    if bitmap == "none":  # rebuilt in full: the copy must agree with parity
        chk = module("md_array", {"name": "bvra", "action": "check", "wait": True})
        assert chk["mismatch_cnt"] == 0


def test_why_integrity_is_needed_md_raid5_on_plain_devices_returns_corrupt_data_silently(
        module, disks, tmp_path):
    """WHY INTEGRITY IS NEEDED. md RAID5 over plain devices (no dm-integrity): 1 MiB of one
    member is overwritten behind md's back. Reading the array back returns different bytes with
    no error at all (no read error, no member errors, not degraded); only a ``check`` notices
    mismatches, and even then md cannot tell which copy is right. With dm-integrity members
    the same corruption reads as an I/O error that md repairs from parity."""
    devs = disks(3)
    r = module("md_array", {"name": "bvwhy", "level": 5, "devices": devs, "assume_clean": True})
    assert not r.failed, r
    data = tmp_path / "data.bin"
    with open(data, "wb") as f:
        f.write(os.urandom(20 * M))
    sh("dd", "if=%s" % data, "of=/dev/md/bvwhy", "bs=1M", "oflag=direct")
    want = hashlib.sha256(data.read_bytes()).hexdigest()

    # 1 MiB in the middle of member 1's data area (after its md 1.2 superblock and data offset),
    # written to the loop device's backing FILE.
    kn = os.path.basename(r["kernel_device"])
    with open("/sys/block/%s/md/dev-%s/offset" % (kn, os.path.basename(devs[1]))) as f:
        data_offset = int(f.read()) * 512
    victim = disks.files[devs[1]]
    sh("dd", "if=/dev/urandom", "of=%s" % victim, "bs=1M", "count=1",
       "seek=%d" % (data_offset // M + 4), "conv=notrunc")
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")

    got = hashlib.sha256(_read_direct("/dev/md/bvwhy", 20)).hexdigest()  # no read error
    assert got != want, "the corrupted MiB was not returned: the test did not hit data"

    state = module("md_array", {"name": "bvwhy"})
    assert state["degraded"] is False and all(m["errors"] == 0 for m in state["members"])

    chk = module("md_array", {"name": "bvwhy", "action": "check", "wait": True})
    assert not chk.failed, chk
    assert chk["mismatch_cnt"] > 0, chk  # md sees inconsistency, but not which copy is right

    # repair recomputes parity from the data chunks, the corrupted one included: the array is
    # consistent again and the corruption is now permanent
    fixed = module("md_array", {"name": "bvwhy", "action": "repair", "wait": True})
    assert not fixed.failed, fixed
    again = module("md_array", {"name": "bvwhy", "action": "check", "wait": True})
    assert again["mismatch_cnt"] == 0, again  # "clean"...
    assert hashlib.sha256(_read_direct("/dev/md/bvwhy", 20)).hexdigest() != want  # ...and wrong


def _read_direct(path, mib):
    """Read ``mib`` MiB with O_DIRECT (past every cache); a read error fails the test."""
    proc = subprocess.run(["dd", "if=%s" % path, "bs=1M", "count=%d" % mib, "iflag=direct",
                           "status=none"], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) == mib * M
    return proc.stdout
