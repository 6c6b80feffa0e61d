"""zfs_key against ZFS 2.1.11: key changes by generation, stdin keys, restored key status."""

import secrets

import pytest

from helpers import node_name, sh


def zget(ds, prop):
    return sh("zfs", "get", "-Hp", "-o", "value", prop, ds).stdout.strip()


@pytest.fixture
def root(module, zpool, tmp_path, request):
    """An encryption root (hex key in a file) with a child holding data; key unloaded."""
    name = "%s/%s" % (zpool["name"], node_name(request))
    kf = tmp_path / "k1.hex"
    kf.write_text(secrets.token_hex(32))
    module("zfs_dataset", {"datasets": [
        {"name": name, "encryption": "aes-256-gcm", "keyformat": "hex", "key_file": str(kf),
         "properties": {"blindvault:key-id": "k1"}},
        {"name": name + "/child"}]})
    with open(zget(name + "/child", "mountpoint") + "/data", "wb") as f:
        f.write(b"sneakernet" * 1000)
    sh("zfs", "unmount", name + "/child")
    sh("zfs", "unmount", name)
    sh("zfs", "unload-key", name)
    yield {"name": name, "key_file": str(kf)}
    sh("zfs", "destroy", "-r", name, check=False)


def test_change_key_by_generation(module, root, exec_log):
    name = root["name"]
    new = "correct horse battery staple"
    args = {"name": name, "key_file": root["key_file"], "new_keyformat": "passphrase",
            "new_key": new, "pbkdf2iters": 100000, "key_id": "k2"}
    plan = module("zfs_key", args, check=True)
    assert plan["changed"] and zget(name, "keyformat") == "hex"
    assert [a["action"] for a in plan["actions"]] == [
        "load-key", "change-key", "record", "snapshot", "unload-key"]

    r = module("zfs_key", args)
    assert not r.failed, r
    assert r["propagation_snapshot"] == name + "@blindvault-key-k2"
    assert "unsafe" in r["replicas_unsafe"] and "R1" in r["replicas_unsafe"]
    assert zget(name, "keyformat") == "passphrase" and zget(name, "keystatus") == "unavailable"
    assert sh("zfs", "get", "-Hp", "-o", "source", "blindvault:key-id", name).stdout.strip() == "local"
    assert zget(name, "blindvault:key-id") == "k2"
    snaps = sh("zfs", "list", "-Hp", "-t", "snapshot", "-o", "name", "-r", name).stdout.split()
    assert set(snaps) == {name + "@blindvault-key-k2", name + "/child@blindvault-key-k2"}
    assert not [line for line in exec_log() if new in line]  # stdin only

    again = module("zfs_key", args)
    assert not again["changed"] and again["key_id"] == "k2"

    # The new passphrase opens the group and the data reads back.
    sh("zfs", "load-key", "-L", "prompt", name, input=new + "\n")
    sh("zfs", "mount", name)
    sh("zfs", "mount", name + "/child")
    with open(zget(name + "/child", "mountpoint") + "/data", "rb") as f:
        assert f.read() == b"sneakernet" * 1000


def test_load_and_unload(module, root):
    name = root["name"]
    with open(root["key_file"]) as f:
        key = f.read()
    r = module("zfs_key", {"name": name, "state": "loaded", "key": key})
    assert r["changed"] and zget(name, "keystatus") == "available"
    assert not module("zfs_key", {"name": name, "state": "loaded"})["changed"]
    sh("zfs", "mount", name)
    r = module("zfs_key", {"name": name, "state": "unloaded"})
    assert r["changed"] and zget(name, "keystatus") == "unavailable"
    assert [a["action"] for a in r["actions"]] == ["unmount", "unload-key"]


def test_inherit_refused_with_replication_holds(module, root, zpool, tmp_path):
    name = root["name"]
    child_root = name + "/own"
    kf2 = tmp_path / "own.hex"
    kf2.write_text(secrets.token_hex(32))
    module("zfs_key", {"name": name, "state": "loaded", "key_file": root["key_file"]})
    module("zfs_dataset", {"name": child_root, "encryption": "on", "keyformat": "hex",
                           "key_file": str(kf2)})
    sh("zfs", "snapshot", child_root + "@s1")
    sh("zfs", "hold", "blindvault:carrier/own", child_root + "@s1")
    r = module("zfs_key", {"name": child_root, "inherit": True})
    assert r.failed and "replication holds" in r["msg"]
    assert zget(child_root, "encryptionroot") == child_root
    r = module("zfs_key", {"name": child_root, "inherit": True, "force": True})
    assert r["changed"] and zget(child_root, "encryptionroot") == name
    assert not module("zfs_key", {"name": child_root, "inherit": True})["changed"]
    sh("zfs", "release", "blindvault:carrier/own", child_root + "@s1")


@pytest.mark.parametrize("extra,message", [
    ({"new_key": "ab" * 32}, "needs key_id"),
    ({"key_id": "k9", "new_keyformat": "hex"}, "needs new_key or new_key_file"),
    ({"key_id": "k9", "new_key": "nothex", "new_keyformat": "hex"}, "64 hexadecimal"),
    ({"inherit": True, "new_key": "ab" * 32, "key_id": "k9"}, "takes no new key"),
    ({"key_id": "k9", "new_key": "ab" * 32, "pbkdf2iters": 5}, "at least 100000"),
])
def test_bad_input(module, root, extra, message):
    r = module("zfs_key", dict({"name": root["name"]}, **extra))
    assert r.failed and message in r["msg"], r
    assert zget(root["name"], "keyformat") == "hex"


def test_not_an_encryption_root(module, root):
    r = module("zfs_key", {"name": root["name"] + "/child", "new_key": "ab" * 32, "key_id": "k9"})
    assert r.failed and "not an encryption root" in r["msg"] and root["name"] in r["msg"]
