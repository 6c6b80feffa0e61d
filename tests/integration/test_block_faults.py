"""Fault injection through the whole block stack (issue #6, seed 004).

The point of dm-integrity under md RAID: corruption of a member's sectors becomes a read error
that md repairs from redundancy, so the data read back is what was written. (The opposite,
md RAID5 over plain devices returning wrong bytes silently, is
test_md_array.py::test_why_integrity_is_needed_md_raid5_on_plain_devices_returns_corrupt_data_silently.)
Members are 64 MiB loop devices; 1 MiB in the middle of one member's backing file is
overwritten with random bytes behind everyone's back (md 1.2 metadata sits near the start).
"""

import os

from ansible_collections.blindvault.storage.plugins.module_utils.block import luks
from helpers import corrupt, read_sha, sh, write_random

M = 1 << 20
FAST_KDF = {"pbkdf": "pbkdf2", "pbkdf_iterations": 1000}  # the VM has 3 GiB; defaults stay argon2id


def member_errors(md):
    return {m["device"]: m["errors"] for m in md["members"]}


def repair_then_check(module, name):
    """md's repair pass, then a check pass: the check must find nothing left to fix."""
    repaired = module("md_array", {"name": name, "action": "repair", "wait": True})
    assert not repaired.failed, repaired.get("msg")
    checked = module("md_array", {"name": name, "action": "check", "wait": True})
    assert not checked.failed, checked.get("msg")
    assert checked["mismatch_cnt"] == 0 and not checked["degraded"], checked
    assert checked["sync_action"] == "idle" and checked["state"] in ("clean", "active")
    return checked


def test_raid5_over_dm_integrity_members_repairs_a_corrupted_member(module, disks):
    devs = disks(3)
    members = module("integrity_device", {
        "wipe": "zero", "journal": "bitmap",
        "devices": [{"device": d, "name": "bvf5m%d" % i} for i, d in enumerate(devs)]})
    assert not members.failed, members.get("msg")
    mappers = [r["mapper"] for r in members["devices"]]
    md = module("md_array", {"name": "bvf5", "level": 5, "devices": mappers,
                             "assume_clean": True})  # members are zeroed: parity already holds
    assert not md.failed, md.get("msg")
    array = "/dev/md/bvf5"
    digest = write_random(array, 40)

    # 12 MiB into the member's file: past dm-integrity's superblock and journal and md's
    # metadata, inside the ~20 MiB of each member the 40 MiB of data (and parity) cover
    corrupt(disks.files[devs[1]], 12 * M)
    assert read_sha(array, 40) == digest  # md read around the EIO and rewrote the sectors

    status = module("md_array", {"name": "bvf5"})
    assert not status["changed"] and not status["degraded"]
    assert member_errors(status)[mappers[1]] > 0, status["members"]
    # state present reads without reopening (md holds the mapping open)
    caught = module("integrity_device", {"device": devs[1], "state": "present"})
    assert not caught.failed and not caught["changed"], caught.get("msg")
    assert caught["failures"] > 0 and caught["name"] == "bvf5m1"

    repair_then_check(module, "bvf5")
    assert read_sha(array, 40) == digest


def test_raid1_over_luks2_integrity_volumes_repairs_a_corrupted_member(module, disks):
    devs = disks(2)
    vols = module("luks2_volume", dict(
        FAST_KDF, state="opened", passphrase="fault-pass", integrity="hmac-sha256",
        sector_size=4096, wipe="none",
        volumes=[{"device": d, "name": "bvf1v%d" % i} for i, d in enumerate(devs)]))
    assert not vols.failed, vols.get("msg")
    volumes = [v["mapper"] for v in vols["volumes"]]
    for mapper in volumes:
        # wipe none leaves every sector unreadable until written: zero each volume once, so md
        # can be created without a resync (assume_clean)
        sh("dd", "if=/dev/zero", "of=" + mapper, "bs=1M", "oflag=direct", "status=none",
           check=False)
    md = module("md_array", {"name": "bvf1", "level": 1, "devices": volumes,
                             "assume_clean": True})
    assert not md.failed, md.get("msg")
    array = "/dev/md/bvf1"
    digest = write_random(array, 40)

    # 36 MiB into the file: behind the 16 MiB LUKS2 header and dm-integrity's journal, ~17 MiB
    # into the data
    corrupt(disks.files[devs[0]], 36 * M)
    assert read_sha(array, 40) == digest  # whichever member md reads, the bytes are right
    checked = repair_then_check(module, "bvf1")  # the repair pass reads both members
    assert read_sha(array, 40) == digest
    assert not checked["degraded"]
    # the corruption was seen, not passed up: with LUKS2 integrity dm-crypt checks the tags
    # (its AEAD error is the read error), and md counted the sectors it rewrote on member 0
    assert member_errors(checked)[volumes[0]] > 0, checked["members"]


def test_a_luks2_header_overwritten_is_refused_then_restored_from_its_backup(module, disks, tmp_path):
    """A stray write over the first MiB (both LUKS2 header copies and part of the keyslots):
    the device now looks blank. Formatting it would lose the volume; the module refuses, even
    with force, and restores the header backup only when asked; the data reads back intact."""
    dev = disks(1)[0]
    backup = str(tmp_path / "bvhdr.luks-header")
    base = dict(FAST_KDF, device=dev, name="bvhdr", state="opened", passphrase="header-pass-1",
                integrity="hmac-sha256", sector_size=4096, wipe="none", header_backup=backup)
    made = module("luks2_volume", base)
    assert not made.failed, made.get("msg")
    uuid = made["uuid"]
    digest = write_random("/dev/mapper/bvhdr", 8)
    closed = module("luks2_volume", dict(base, state="closed"))
    assert not closed.failed and os.stat(backup).st_mode & 0o777 == 0o600

    # the module's own check of the metadata copies agrees with cryptsetup's: both check out
    assert luks.valid_header_copies(dev) == [0, 16384]
    corrupt(disks.files[dev], 0, M)  # both binary headers and JSON copies, the first keyslots
    sh("blockdev", "--flushbufs", dev)
    assert sh("cryptsetup", "isLuks", dev, check=False).returncode != 0
    assert luks.valid_header_copies(dev) == []
    before = read_sha(dev, 20)  # header area and the first of the data
    for force in (False, True):
        refused = module("luks2_volume", dict(base, force=force))
        assert refused.failed and "restore_header: true" in refused["msg"], refused
        assert uuid in refused["msg"] and "Nothing was written" in refused["msg"]
    wrong = module("luks2_volume", dict(base, passphrase="not-the-pass", restore_header=True))
    assert wrong.failed and "does not unlock" in wrong["msg"], wrong
    assert read_sha(dev, 20) == before  # refusals wrote nothing

    plan = module("luks2_volume", dict(base, restore_header=True), check=True)
    assert not plan.failed and [a["action"] for a in plan["actions"]] == ["restore-header", "open"], plan
    assert read_sha(dev, 20) == before
    restored = module("luks2_volume", dict(base, restore_header=True))
    assert not restored.failed, restored.get("msg")
    assert restored["uuid"] == uuid and restored["opened"], restored
    assert read_sha("/dev/mapper/bvhdr", 8) == digest
    again = module("luks2_volume", dict(base, restore_header=True))
    assert not again.failed and not again["changed"], again


def test_a_luks2_header_overwritten_while_open_is_restored_under_the_open_mapping(module, disks, tmp_path):
    """The usual accident: the volume is in use when a stray write hits its header. The
    mapping keeps working (its key is in the kernel); the header comes back from the backup
    without closing it, and the volume opens again after a close."""
    dev = disks(1)[0]
    backup = str(tmp_path / "bvhdo.luks-header")
    base = dict(FAST_KDF, device=dev, name="bvhdo", state="opened", passphrase="header-pass-2",
                integrity="hmac-sha256", sector_size=4096, wipe="none", header_backup=backup)
    made = module("luks2_volume", base)
    assert not made.failed, made.get("msg")
    digest = write_random("/dev/mapper/bvhdo", 4)
    corrupt(disks.files[dev], 0, M)
    sh("blockdev", "--flushbufs", dev)
    refused = module("luks2_volume", base)
    assert refused.failed and "restore_header: true" in refused["msg"], refused
    restored = module("luks2_volume", dict(base, restore_header=True))
    assert not restored.failed, restored.get("msg")
    assert [a["action"] for a in restored["actions"]] == ["restore-header"], restored
    assert restored["uuid"] == made["uuid"] and restored["opened"]
    closed = module("luks2_volume", dict(base, state="closed"))
    assert not closed.failed and closed["changed"], closed
    reopened = module("luks2_volume", base)
    assert not reopened.failed and reopened["opened"], reopened
    assert read_sha("/dev/mapper/bvhdo", 4) == digest
