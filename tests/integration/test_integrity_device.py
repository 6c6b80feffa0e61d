"""integrity_device against the real kernel: format, open, corrupt underneath, refuse."""

import os
import re
import secrets

from helpers import corrupt, read_sha, sh, write_random

M = 1 << 20
READ_ERRORS = ("Input/output error", "Invalid or incomplete multibyte or wide character")


def blkid_type(dev):
    return sh("blkid", "-p", "-o", "value", "-s", "TYPE", dev, check=False).stdout.strip()


def test_check_mode_then_format_open_and_second_run_unchanged(module, disks):
    dev, = disks(1)
    args = {"device": dev, "name": "bvint0", "wipe": "zero", "journal": "bitmap"}
    planned = module("integrity_device", args, check=True, diff=True)
    assert not planned.failed, planned.get("msg")
    assert planned["changed"] and [a["action"] for a in planned["actions"]] == \
        ["format", "open", "zero", "close", "open"]
    assert planned["diff"]["before"] == {"state": "absent"}
    assert planned["diff"]["after"]["state"] == "opened"
    assert blkid_type(dev) == "" and not os.path.exists("/dev/mapper/bvint0")  # untouched

    res = module("integrity_device", args, diff=True)
    assert not res.failed, res.get("msg")
    assert res["changed"] and res["opened"] and res["mapper"] == "/dev/mapper/bvint0"
    assert res["journal"] == "bitmap" and res["tag_size"] == 4 and res["sector_size"] == 4096
    assert res["failures"] == 0 and 0 < res["size"] < 64 * M and res["wipe_seconds"] > 0
    assert blkid_type(dev) == "DM_integrity"
    assert " B " in sh("dmsetup", "table", "bvint0").stdout  # bitmap mode in the kernel
    # the zero fill initialised every tag: the whole mapping reads back without an error
    with open("/dev/mapper/bvint0", "rb", buffering=0) as f:
        assert f.read(res["size"]) == bytes(res["size"])

    again = module("integrity_device", args, diff=True)
    assert not again.failed and not again["changed"] and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]


def test_corruption_underneath_becomes_an_io_error_and_is_counted(module, disks):
    dev, = disks(1)
    res = module("integrity_device", {"device": dev, "name": "bvint1", "wipe": "none"})
    assert not res.failed, res.get("msg")
    assert "EIO" in str(res["warnings"])
    sh("dd", "if=/dev/zero", "of=/dev/mapper/bvint1", "bs=1M", "count=40", "oflag=direct",
       "status=none")
    digest = write_random("/dev/mapper/bvint1", 40)
    assert read_sha("/dev/mapper/bvint1", 40) == digest

    corrupt(disks.files[dev], 20 * M)
    sh("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
    proc = sh("dd", "if=/dev/mapper/bvint1", "of=/dev/null", "bs=1M", "iflag=direct",
              "count=40", check=False)
    # dm-integrity fails the read (EILSEQ from 6.1's BLK_STS_PROTECTION, EIO on older kernels)
    assert proc.returncode != 0 and any(e in proc.stderr for e in READ_ERRORS), proc.stderr
    status = module("integrity_device", {"device": dev, "name": "bvint1"})
    assert not status["changed"] and status["failures"] > 0
    # the kernel's counter, read after ours: it may only have grown since (udev/blkid probes
    # re-read the corrupt blocks in the background)
    counted = re.search(r"failures:\s*(\d+)", sh("integritysetup", "status", "bvint1").stdout)
    assert counted and int(counted.group(1)) >= status["failures"], counted


def test_members_in_one_call_then_closed_reopened_and_erased(module, disks, exec_log):
    devs = disks(3)
    items = [{"device": d, "name": "bvm%d" % i} for i, d in enumerate(devs)]
    res = module("integrity_device", {"devices": items, "wipe": "none", "journal": "none"})
    assert not res.failed, res.get("msg")
    assert [r["mapper"] for r in res["devices"]] == ["/dev/mapper/bvm%d" % i for i in range(3)]
    assert all(r["changed"] and r["journal"] == "none" for r in res["devices"])
    # one state read for all three: two dmsetup processes before and two after
    assert len(exec_log("dmsetup")) == 4

    closed = module("integrity_device", {"devices": items, "state": "closed"})
    assert [a["action"] for a in closed["actions"]] == ["close"] * 3
    assert not any(os.path.exists("/dev/mapper/bvm%d" % i) for i in range(3))
    assert all(blkid_type(d) == "DM_integrity" for d in devs)

    # reopened with another algorithm than at format: the first-sector read warns
    wrong = module("integrity_device", {"device": devs[0], "name": "bvm0",
                                        "algorithm": "crc32"})
    assert wrong["changed"] and "first sector" in str(wrong["warnings"])
    # a device whose every read fails is not blank, though blkid finds nothing on it either
    stacked = module("integrity_device", {"device": "/dev/mapper/bvm0", "name": "bvstack"})
    assert stacked.failed and "cannot be read" in stacked["msg"], stacked.get("msg")
    # closing needs neither the algorithm nor the name it was opened with
    shut = module("integrity_device", {"device": devs[0], "state": "closed"})
    assert not shut.failed and shut["changed"], shut.get("msg")

    refused = module("integrity_device", {"device": devs[1], "state": "absent"})
    assert refused.failed and "force: true" in refused["msg"]
    assert blkid_type(devs[1]) == "DM_integrity"
    gone = module("integrity_device", {"device": devs[1], "state": "absent", "force": True})
    assert gone["changed"] and blkid_type(devs[1]) == ""
    again = module("integrity_device", {"device": devs[1], "state": "absent", "force": True})
    assert not again["changed"]


def test_journal_mode_change_reopens_and_keeps_the_data(module, disks):
    dev, = disks(1)
    args = {"device": dev, "name": "bvj", "wipe": "zero"}
    assert not module("integrity_device", args).failed
    digest = write_random("/dev/mapper/bvj", 8)
    res = module("integrity_device", dict(args, journal="bitmap"))
    assert [a["action"] for a in res["actions"]] == ["close", "open"]
    assert res["journal"] == "bitmap" and " B " in sh("dmsetup", "table", "bvj").stdout
    assert read_sha("/dev/mapper/bvj", 8) == digest


def test_keyed_tags_and_the_key_never_in_argv(module, disks, exec_log, tmp_path):
    dev, = disks(1)
    key = tmp_path / "hmac.key"
    key.write_bytes(secrets.token_bytes(32))
    key.chmod(0o600)
    res = module("integrity_device", {"device": dev, "name": "bvh", "algorithm": "hmac-sha256",
                                      "key_file": str(key), "wipe": "zero"})
    assert not res.failed, res.get("msg")
    assert res["tag_size"] == 32 and "hmac(sha256)" in sh("dmsetup", "table", "bvh").stdout
    again = module("integrity_device", {"device": dev, "name": "bvh", "algorithm": "hmac-sha256",
                                        "key_file": str(key)})
    assert not again.failed and not again["changed"], again.get("msg")
    hexkey = key.read_bytes().hex()
    assert hexkey not in str(again) and hexkey not in str(res)
    assert not [c for c in exec_log() if hexkey in c]
    assert any("--integrity-key-file" in c for c in exec_log("integritysetup"))


def test_bad_input_is_refused_before_anything_changes(module, disks, tmp_path):
    fs, used = disks(2)
    sh("mkfs.ext4", "-q", "-F", fs)
    res = module("integrity_device", {"device": fs, "name": "bvx"})
    assert res.failed and "already has a ext4 signature" in res["msg"], res.get("msg")
    assert blkid_type(fs) == "ext4"

    cases = [
        ({"device": used, "name": "bvy", "algorithm": "hmac-sha256"}, "needs key_file"),
        ({"device": used}, "needs name"),
        ({"device": used, "name": "a/b"}, "not a valid device-mapper name"),
        ({"device": str(tmp_path / "nope"), "name": "bvy"}, "does not exist"),
        ({"device": str(tmp_path), "name": "bvy"}, "not a block device"),
        ({"device": used, "name": "bvy", "tag_size": 64}, "does not fit"),
        ({"devices": [{"device": used, "name": "bvy"}, {"device": used, "name": "bvz"}]},
         "more than once"),
    ]
    for args, words in cases:
        res = module("integrity_device", args)
        assert res.failed and words in res["msg"], (args, res.get("msg"))
    assert blkid_type(used) == ""

    assert not module("integrity_device", {"device": used, "name": "bvy", "wipe": "none"}).failed
    res = module("integrity_device", {"device": used, "name": "bvy", "algorithm": "sha256"})
    assert res.failed and "refusing to reformat" in res["msg"]
    res = module("integrity_device", {"device": used, "name": "other"})
    assert res.failed and "already open as bvy" in res["msg"]


def test_force_erases_old_signatures_so_the_next_run_needs_none(module, disks):
    dev, other = disks(2)
    # an md 1.0 superblock sits at the END of the device, where integritysetup never writes
    sh("mdadm", "--create", "/dev/md/bvold", "--run", "--assume-clean", "--metadata=1.0",
       "--level=1", "--raid-devices=2", dev, other)
    sh("mdadm", "--stop", "/dev/md/bvold")
    assert blkid_type(dev) == "linux_raid_member"
    res = module("integrity_device", {"device": dev, "name": "bvold", "wipe": "none"})
    assert res.failed and "linux_raid_member" in res["msg"]
    res = module("integrity_device", {"device": dev, "name": "bvold", "wipe": "none",
                                      "force": True})
    assert not res.failed, res.get("msg")
    assert [a["action"] for a in res["actions"]] == ["wipe-signatures", "format", "open"]
    assert blkid_type(dev) == "DM_integrity"
    again = module("integrity_device", {"device": dev, "name": "bvold"})
    assert not again.failed and not again["changed"], again.get("msg")
