"""zfs_migrate against real ZFS 2.1.11: a pool's unencrypted datasets end encrypted with
identical files; the originals are destroyed only after verification and only with finalize;
a busy original stops the switch before anything changed, and the rerun completes; a second
run after the migration changes nothing."""

import os
import shutil
import subprocess
import tempfile

import pytest

from helpers import sh
from test_zfs_replicate import files_of, prop, put, snapshots
from zfs_scenarios import destroy_pool, key_opts, make_pool, new_key


@pytest.fixture
def site():
    root = tempfile.mkdtemp(prefix="bvmig-", dir="/tmp")
    pool = make_pool(root, "bvmig", "384M")
    try:
        key = new_key(root, "enc", "hex")
        sh("zfs", "create", "-o", "encryption=aes-256-gcm", *key_opts("hex", key), pool + "/enc")
        sh("zfs", "unmount", pool + "/enc")
        sh("zfs", "unload-key", pool + "/enc")  # as after a reboot: the module loads it when needed
        yield {"root": root, "pool": pool, "key": key}
    finally:
        destroy_pool(pool)
        shutil.rmtree(root, ignore_errors=True)


def exists(ds):
    return sh("zfs", "list", "-H", "-o", "name", ds, check=False).returncode == 0


def test_three_unencrypted_datasets_end_encrypted_with_identical_files(module, site):
    p, key = site["pool"], site["key"]
    names = ["%s/%s" % (p, n) for n in ("home", "projects", "media")]
    for n in names:
        sh("zfs", "create", n)
        put(n, "a.bin")
    sh("zfs", "create", "-o", "mountpoint=/srv/bv-projects-sub", names[1] + "/sub")
    put(names[1] + "/sub", "s.bin")
    sh("zfs", "set", "compression=lz4", names[2])
    mp_before = {n: prop(n, "mountpoint") for n in names}
    args = {"datasets": names, "root": p + "/enc", "key_file": key}

    planned = module("zfs_migrate", args, check=True)
    assert not planned.failed, planned.get("msg")
    assert planned["changed"] and [d["action"] for d in planned["datasets"]] == ["copy"] * 3
    assert not exists(p + "/enc/home") and snapshots(names[0]) == []

    first = module("zfs_migrate", args)
    assert not first.failed, first.get("msg")
    assert first["changed"] and all(d["verified"]["files"] >= 1 for d in first["datasets"]), first["datasets"]
    for n in names:  # copied and proven; originals untouched, copies read-only replicas, unmounted
        t = p + "/enc/" + n.rsplit("/", 1)[1]
        assert prop(t, "encryptionroot") == p + "/enc" and prop(t, "readonly") == "on"
        assert prop(n, "mounted") == "yes" and prop(t, "mounted") == "no"
    assert prop(p + "/enc/projects/sub", "encryptionroot") == p + "/enc"
    assert prop(p + "/enc", "keystatus") == "unavailable"  # loaded for the receive only
    again = module("zfs_migrate", args)
    assert not again.failed and again["changed"] is False, again.get("msg")

    # data written after the first copy travels with the final snapshot
    put(names[0], "late.bin")
    expected = {n: files_of(n) for n in names}

    # a busy original stops the switch before anything of that dataset changed
    holder = subprocess.Popen(["sleep", "600"], cwd=mp_before[names[2]])
    try:
        busy = module("zfs_migrate", dict(args, finalize=True))
    finally:
        holder.kill()
        holder.wait()
    assert busy.failed and exists(names[2]) and prop(names[2], "mounted") == "yes", busy
    assert prop(p + "/enc/media", "blindvault:migrated-from") in (None, "-", "")

    done = module("zfs_migrate", dict(args, finalize=True))
    assert not done.failed, done.get("msg")
    assert done["changed"]
    for n in names:
        t = p + "/enc/" + n.rsplit("/", 1)[1]
        assert not exists(n), n  # destroyed, last
        assert prop(t, "blindvault:migrated-from") == n and prop(t, "readonly") == "off"
        assert prop(t, "blindvault:replica-of") in (None, "-", "")
        assert prop(t, "mountpoint") == mp_before[n] and prop(t, "mounted") == "yes"
        assert files_of(t) == expected[n], n  # identical files, the late one included
    assert prop(p + "/enc/media", "compression") == "lz4"
    assert prop(p + "/enc/projects/sub", "mountpoint").endswith("/srv/bv-projects-sub")

    final = module("zfs_migrate", dict(args, finalize=True))
    assert not final.failed and final["changed"] is False, final.get("msg")
    assert [d["action"] for d in final["datasets"]] == ["done"] * 3
    assert not module("zfs_migrate", args)["changed"]
    assert os.path.isdir(mp_before[names[0]])
