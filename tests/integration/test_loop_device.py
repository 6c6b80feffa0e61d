"""loop_device against the real kernel: attach, reuse, reconcile, detach, refuse."""

import os
import subprocess

import pytest

from helpers import loops_of, sh, sysfs

M = 1 << 20


def test_attach_on_ext4_turns_direct_io_on_and_is_idempotent(module, scratch):
    f = os.path.join(scratch["ext4"], "d0.img")
    r = module("loop_device", {"file": f, "size": "64M"})
    assert not r.failed, r
    assert r["changed"] and r["backing_fs"] == "ext4"
    assert loops_of(f) == [r["device"]]
    assert sysfs(r["device"], "loop/dio") == "1" and r["direct_io"] is True
    st = os.stat(f)
    assert st.st_size == 64 * M and st.st_blocks * 512 < M  # sparse
    assert int(sysfs(r["device"], "size")) * 512 == 64 * M

    again = module("loop_device", {"file": f, "size": "64M"})
    assert not again["changed"] and again["actions"] == []
    assert again["device"] == r["device"] and loops_of(f) == [r["device"]]


def test_btrfs_auto_is_off_and_on_is_refused_before_anything_changes(module, scratch):
    f = os.path.join(scratch["btrfs"], "b0.img")
    refused = module("loop_device", {"file": f, "size": "64M", "direct_io": "on"})
    assert refused.failed and "checksum errors" in refused["msg"]
    assert not os.path.exists(f)  # nothing was created

    r = module("loop_device", {"file": f, "size": "64M"})
    assert r["backing_fs"] == "btrfs" and r["direct_io"] is False
    assert "checksum" in r["direct_io_reason"]
    assert sysfs(r["device"], "loop/dio") == "0"

    refused = module("loop_device", {"file": f, "direct_io": "on"})
    assert refused.failed and sysfs(r["device"], "loop/dio") == "0"

    forced = module("loop_device", {"file": f, "direct_io": "on", "force": True})
    assert forced["changed"] and [a["action"] for a in forced["actions"]] == ["set-direct-io"]
    assert forced["direct_io"] == (sysfs(r["device"], "loop/dio") == "1")


def test_xfs_auto_is_on(module, scratch):
    f = os.path.join(scratch["xfs"], "x0.img")
    r = module("loop_device", {"file": f, "size": "16M"})
    assert r["backing_fs"] == "xfs" and r["direct_io"] is True
    assert sysfs(r["device"], "loop/dio") == "1"


def test_tmpfs_auto_is_off(module, tmp_path):
    f = str(tmp_path / "t.img")
    r = module("loop_device", {"file": f, "size": "8M"})
    try:
        assert r["backing_fs"] in ("tmpfs", "overlay", "ext4") and not r.failed
        if r["backing_fs"] != "ext4":
            assert r["direct_io"] is False
    finally:
        module("loop_device", {"file": f, "state": "absent"})


def test_check_mode_changes_nothing_and_shows_the_plan(module, scratch):
    f = os.path.join(scratch["ext4"], "c0.img")
    r = module("loop_device", {"file": f, "size": "32M"}, check=True, diff=True)
    assert r["changed"] and r["device"] is None
    assert [a["action"] for a in r["actions"]] == ["create-file", "attach"]
    assert r["diff"]["before"] == {"state": "absent"}
    assert r["diff"]["after"]["state"] == "attached"
    assert not os.path.exists(f)

    real = module("loop_device", {"file": f, "size": "32M"})
    detach = module("loop_device", {"file": f, "state": "detached"}, check=True)
    assert detach["changed"] and loops_of(f) == [real["device"]]


def test_detach_reattach_and_absent(module, scratch):
    f = os.path.join(scratch["ext4"], "r0.img")
    first = module("loop_device", {"file": f, "size": "16M"})
    with open(first["device"], "wb") as dev:
        dev.write(b"blindvault" * 100)

    d = module("loop_device", {"file": f, "state": "detached"})
    assert d["changed"] and loops_of(f) == [] and os.path.exists(f)
    assert not module("loop_device", {"file": f, "state": "detached"})["changed"]

    again = module("loop_device", {"file": f})  # no size: the file exists
    assert again["changed"] and loops_of(f) == [again["device"]]
    with open(again["device"], "rb") as dev:
        assert dev.read(1000) == b"blindvault" * 100

    gone = module("loop_device", {"file": f, "state": "absent"})
    assert gone["changed"] and not os.path.exists(f)
    assert not module("loop_device", {"file": f, "state": "absent"})["changed"]


def test_existing_attachment_made_elsewhere_is_reused_and_reconciled(module, scratch):
    f = os.path.join(scratch["ext4"], "e0.img")
    sh("truncate", "-s", "16M", f)
    dev = sh("losetup", "--find", "--show", "--direct-io=off", f).stdout.strip()
    r = module("loop_device", {"file": f, "sector_size": 4096}, diff=True)
    assert r["device"] == dev and loops_of(f) == [dev]
    assert sorted(a["action"] for a in r["actions"]) == ["set-direct-io", "set-sector-size"]
    assert sysfs(dev, "queue/logical_block_size") == "4096"
    assert sysfs(dev, "loop/dio") == "1"
    assert r["diff"]["before"]["direct_io"] is False and r["diff"]["after"]["direct_io"] is True
    assert not module("loop_device", {"file": f, "sector_size": 4096})["changed"]


def test_grow_tells_the_attached_device(module, scratch):
    f = os.path.join(scratch["ext4"], "g0.img")
    r = module("loop_device", {"file": f, "size": "16M"})
    g = module("loop_device", {"file": f, "size": "32M"})
    assert g["changed"] and g["device"] == r["device"] and g["size"] == 32 * M
    assert int(sysfs(r["device"], "size")) * 512 == 32 * M
    shrink = module("loop_device", {"file": f, "size": "16M"})
    assert shrink.failed and "shrink" in shrink["msg"] and os.path.getsize(f) == 32 * M


def test_read_only_change_refused_then_forced(module, scratch):
    f = os.path.join(scratch["ext4"], "o0.img")
    module("loop_device", {"file": f, "size": "8M"})
    refused = module("loop_device", {"file": f, "read_only": True})
    assert refused.failed and "read_only cannot change" in refused["msg"]
    forced = module("loop_device", {"file": f, "read_only": True, "force": True})
    assert forced["read_only"] is True and sysfs(forced["device"], "ro") == "1"
    assert loops_of(f) == [forced["device"]]


def test_list_form_converges_many_in_one_call(module, scratch):
    files = [os.path.join(scratch["ext4"], "m%d.img" % i) for i in range(3)]
    files.append(os.path.join(scratch["btrfs"], "m3.img"))
    args = {"size": "8M", "devices": [{"file": f} for f in files]}
    r = module("loop_device", args)
    assert r["changed"] and len(r["devices"]) == 4
    assert [d["direct_io"] for d in r["devices"]] == [True, True, True, False]
    for f, d in zip(files, r["devices"]):
        assert loops_of(f) == [d["device"]]
    again = module("loop_device", args)
    assert not again["changed"] and all(not d["changed"] for d in again["devices"])

    # One bad item refuses the whole list before anything changes.
    bad = {"devices": [{"file": files[0], "state": "absent"}, {"file": files[1], "size": "4M"}]}
    refused = module("loop_device", bad)
    assert refused.failed and "shrink" in refused["msg"]
    assert os.path.exists(files[0]) and loops_of(files[0]) == [r["devices"][0]["device"]]

    done = module("loop_device", {"state": "absent", "devices": [{"file": f} for f in files]})
    assert done["changed"] and not any(os.path.exists(f) for f in files)


@pytest.mark.parametrize("args,message", [
    ({"file": "/nonexistent-dir/x.img", "size": "8M"}, "parent directory"),
    ({"file": "/dev/null"}, "not a regular file"),
    ({"file": "relative.img", "size": "8M"}, "absolute path"),
    ({"file": "/tmp/x.img", "size": "8M", "state": "absent"}, "size only applies"),
    ({"file": "/tmp/x.img", "size": "eight"}, "not a size"),
    ({"file": "/tmp/x.img", "devices": [{"file": "/tmp/y.img"}]}, "mutually exclusive"),
    ({}, "one of the following is required"),
    ({"devices": [{"file": "/tmp/d.img", "size": "8M"}, {"file": "/tmp/d.img"}]}, "more than once"),
    ({"devices": [{"size": "8M"}]}, "devices[0]: missing required arguments: file"),
    ({"file": "/tmp/x.img", "size": "8M", "sector_size": 1024}, "sector_size"),
])
def test_bad_input_fails_clearly_and_touches_nothing(module, args, message):
    before = sh("losetup", "--list", "--json").stdout
    r = module("loop_device", args)
    assert r.failed and message in r["msg"], r
    assert "Traceback" not in r["msg"]
    assert sh("losetup", "--list", "--json").stdout == before
    assert not os.path.exists("/tmp/x.img") and not os.path.exists("/tmp/d.img")


def test_absent_keeps_the_file_of_a_busy_device(module, scratch):
    f = os.path.join(scratch["ext4"], "busy.img")
    r = module("loop_device", {"file": f, "size": "32M"})
    mnt = os.path.join(scratch["ext4"], "busy-mnt")
    os.makedirs(mnt)
    sh("mkfs.ext4", "-q", r["device"])
    sh("mount", r["device"], mnt)
    try:
        gone = module("loop_device", {"file": f, "state": "absent"})
        assert gone.failed and "is in use by" in gone["msg"], gone
        # refused before anything: still attached, no lazy detach armed, the file kept
        assert os.path.exists(f) and loops_of(f) and sysfs(r["device"], "loop/autoclear") == "0"
    finally:
        sh("umount", mnt)
    assert module("loop_device", {"file": f, "state": "absent"})["changed"]
    assert not os.path.exists(f) and loops_of(f) == []


@pytest.mark.full  # every Molecule scenario proves the same through ansible-playbook
def test_playbook_uses_the_collection_by_name(tmp_path):
    """The public interface: ansible-playbook with blindvault.storage.loop_device, check mode
    first, then apply, then idempotence, in one playbook run."""
    top = os.environ["BV_TOP"]
    env = dict(os.environ, BV_SCRATCH=str(tmp_path))
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local",
         os.path.join(top, "tests/integration/playbooks/loop_device.yml")],
        env=env, text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "failed=0" in proc.stdout
