"""zfs_verify against ZFS 2.1.11: a keyed read finds the damage key-less checks cannot see
(hex->hex included), healthy replicas verify in both modes, and keys and mounts are left
exactly as they were."""

import glob
import hashlib
import json
import os
import shutil
import tempfile
import time

import pytest

from helpers import sh
from zfs_scenarios import KEYCHANGE_CASES, PAYLOAD, destroy_pool, make_pool, new_key

# The real zfs, resolved before exec_log puts its logging shims first on PATH: the tests' own
# independent reads stay out of the module's command log.
ZFS = shutil.which("zfs") or "zfs"
DAMAGED = [c for c, (_old, _new, sent) in KEYCHANGE_CASES.items() if sent == "child"]


def key_state(*names):
    """{dataset: (keystatus, mounted)} straight from zfs (independent of the module)."""
    out = sh(ZFS, "list", "-Hp", "-o", "name,keystatus,mounted", "-r", *names).stdout
    return {line.split("\t")[0]: tuple(line.split("\t")[1:]) for line in out.splitlines()}


def our_mounts():
    with open("/proc/mounts") as f:
        return [line for line in f if "blindvault-verify-" in line]


def read_key(path):
    with open(path) as f:
        return f.read()


@pytest.fixture
def unchanged(zfs_lab):
    """The shared pools' key and mount state is the same after the test as before it."""
    before = key_state(zfs_lab["src"], zfs_lab["dst"])
    yield before
    assert key_state(zfs_lab["src"], zfs_lab["dst"]) == before
    assert our_mounts() == []
    assert glob.glob(os.path.join(tempfile.gettempdir(), "blindvault-verify-*")) == []


def no_secret_anywhere(secret, exec_log, result):
    assert secret and all(secret not in line for line in exec_log())
    assert secret not in json.dumps(result)


def by_name(result):
    return {d["name"]: d for d in result["datasets"]}


def test_healthy_replica_verifies_with_the_new_key_in_both_modes(module, zfs_lab, exec_log, unchanged):
    src, dst, keys = zfs_lab["src"], zfs_lab["dst"], zfs_lab["keys"]["healthy"]
    root = dst + "/healthy"
    assert unchanged[root] == ("unavailable", "no")
    secret = read_key(keys["new"]).strip()
    r = module("zfs_verify", {"name": root, "key": secret})
    assert not r.failed, r
    assert r["ok"] and not r["changed"] and r["failed_datasets"] == [] and r["hazards"] == []
    assert r["keys_loaded"] == [root]
    for d in r["datasets"]:
        assert d["status"] == "ok" and d["snapshot"] == "s2" and d["error"] is None, d
        assert d["bytes"] > 0 and len(d["sha256"]) == 64 and d["seconds"] > 0
    assert by_name(r)[root + "/child"]["bytes"] > len(PAYLOAD)  # the payload went through
    for d in r["datasets"]:
        print("stream healthy %s@%s: %d B sha256 %s %.2f s"
              % (d["name"], d["snapshot"], d["bytes"], d["sha256"], d["seconds"]))
    no_secret_anywhere(secret, exec_log, r)
    assert len(exec_log("zfs")) == 1 + 1 + 2 + 1  # list, load-key, 2 sends, unload-key
    assert [line for line in exec_log("zfs") if "load-key" in line] == [
        "zfs load-key -L prompt " + root, "zfs unload-key " + root]

    f = module("zfs_verify", {"name": root, "key_file": keys["new"], "mode": "files",
                              "compare_files_with": src + "/healthy"})
    assert not f.failed, f
    got = by_name(f)
    child = got[root + "/child"]
    assert child["status"] == "ok" and child["files"] == 1 and child["bytes"] == len(PAYLOAD)
    listing = "%s  payload\n" % hashlib.sha256(PAYLOAD).hexdigest()
    assert child["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert child["mismatches"] == [] and child["compared_with"] == src + "/healthy/child@s2"
    assert got[root]["files"] == 0 and got[root]["status"] == "ok"
    for d in f["datasets"]:
        print("files healthy %s@%s: %d file(s) %d B %.2f s (source hashed too)" % (
            d["name"], d["snapshot"], d["files"], d["bytes"], d["seconds"]))
    assert "zfs load-key -L file://%s %s" % (keys["new"], root) in exec_log("zfs")


@pytest.mark.parametrize("case", DAMAGED)
def test_each_damaged_child_fails_while_its_root_verifies(module, zfs_lab, exec_log, unchanged, case):
    """No key given: each replica root loads from its keylocation (the old key, which is what
    the replica root still has); its child, re-sent alone after the key change, cannot be read.
    hex-hex too, where zfs_info sees nothing."""
    dst = zfs_lab["dst"]
    root = "%s/%s" % (dst, case)
    start = time.monotonic()
    r = module("zfs_verify", {"name": root})
    seconds = time.monotonic() - start
    assert r.failed and r["ok"] is False, r
    assert r["failed_datasets"] == [root + "/child"]
    got = by_name(r)
    assert got[root]["status"] == "ok" and got[root]["snapshot"] == "s1"
    child = got[root + "/child"]
    assert child["status"] == "failed" and child["snapshot"] == "s2"
    assert child["error"] == "warning: cannot send '%s/child@s2': dataset key must be loaded" % root
    assert "cannot be decrypted with it" in child["hint"]
    assert root + "/child@s2" in r["msg"] and "1 of 2 datasets failed" in r["msg"]
    assert {h["reason"] for h in r["hazards"]} == (set() if case == "hex-hex" else
                                                   {"pbkdf2" if case == "pp-pp" else "keyformat"})
    assert len([line for line in exec_log("zfs") if " list " in line]) == 1
    print("stream %s: root %s B %.2f s, child failed, call %.1f s" % (
        case, got[root]["bytes"], got[root]["seconds"], seconds))


def test_hex_to_hex_child_fails_in_files_mode_too(module, zfs_lab, unchanged):
    src, dst = zfs_lab["src"], zfs_lab["dst"]
    root = dst + "/hex-hex"
    r = module("zfs_verify", {"name": root, "mode": "files", "compare_files_with": src + "/hex-hex",
                              "fail_on_error": False})
    assert not r.failed and r["ok"] is False, r
    got = by_name(r)
    assert got[root]["status"] == "ok" and got[root]["compared_with"] == src + "/hex-hex@s1"
    child = got[root + "/child"]
    assert child["error"] == "filesystem '%s/child@s2' can not be mounted: Permission denied" % root
    assert child["hint"] and r["failed_datasets"] == [root + "/child"]


def test_the_new_key_does_not_open_a_damaged_replica(module, zfs_lab, unchanged):
    root = zfs_lab["dst"] + "/hex-hex"
    r = module("zfs_verify", {"name": root, "key_file": zfs_lab["keys"]["hex-hex"]["new"],
                              "fail_on_error": False})
    assert not r.failed and r["ok"] is False
    assert [d["status"] for d in r["datasets"]] == ["failed", "failed"]
    assert r["datasets"][0]["error"] == ("the key of %s could not be loaded: Key load error: "
                                         "Incorrect key provided for '%s'." % (root, root))
    assert r["keys_loaded"] == []


def test_a_loaded_key_and_mounts_stay_as_they_were(module, zfs_lab):
    dst, keys = zfs_lab["dst"], zfs_lab["keys"]["healthy"]
    root = dst + "/healthy"
    sh("zfs", "load-key", "-L", "file://" + keys["new"], root)
    try:
        sh("zfs", "mount", root)
        sh("zfs", "mount", root + "/child")
        before = key_state(root)
        assert set(before.values()) == {("available", "yes")}
        for mode in ("stream", "files"):
            r = module("zfs_verify", {"name": root, "mode": mode})
            assert not r.failed and r["ok"] and r["keys_loaded"] == [], r
            assert key_state(root) == before
    finally:
        sh("zfs", "unmount", root + "/child", check=False)
        sh("zfs", "unmount", root, check=False)
        sh("zfs", "unload-key", root)
    assert our_mounts() == []


def test_check_mode_verifies_all_the_same(module, zfs_lab, unchanged):
    root = zfs_lab["dst"] + "/pp-hex"
    r = module("zfs_verify", {"name": root, "fail_on_error": False}, check=True)
    assert not r.failed and not r["changed"]
    assert [d["status"] for d in r["datasets"]] == ["ok", "failed"]
    assert r["keys_loaded"] == [root]


@pytest.mark.parametrize("args,message", [
    ({"name": "bvdst/nope"}, "bvdst/nope does not exist"),
    ({"name": "bvdst/healthy", "snapshot": "s9"}, "nothing to verify under bvdst/healthy"),
    ({"name": "bvdst/healthy", "key": "x" * 64, "key_file": "/etc/hostname"}, "mutually exclusive"),
    ({"name": "bvdst/healthy", "compare_files_with": "bvsrc/healthy"}, "needs mode files"),
    ({"name": "bvdst/healthy", "mode": "files", "compare_files_with": "bvsrc/nope"},
     "source bvsrc/nope does not exist"),
    ({"name": "bvdst/healthy", "keys": [{"encryptionroot": "bvdst/pp-pp", "key": "x" * 64}]},
     "not an encryption root of bvdst/healthy"),
])
def test_bad_input_fails_clearly_before_anything_is_touched(module, zfs_lab, exec_log, unchanged,
                                                            args, message):
    r = module("zfs_verify", args)
    assert r.failed and message in r["msg"] and "Traceback" not in r["msg"], r
    assert not [line for line in exec_log("zfs") if "load-key" in line or "send" in line]


# -- a pool of our own: several encryption roots, a volume, files that differ ----------------

@pytest.fixture(scope="module")
def vpool():
    root = tempfile.mkdtemp(prefix="bvver-", dir="/tmp")
    keydir = os.path.join(root, "keys")
    os.makedirs(keydir)
    pool = make_pool(root, "bvver", "192M")
    ka, kb = new_key(keydir, "a", "hex"), new_key(keydir, "b", "passphrase")
    try:
        m = pool + "/multi"
        sh("zfs", "create", m)
        sh("zfs", "create", "-o", "encryption=on", "-o", "keyformat=hex",
           "-o", "keylocation=file://" + ka, m + "/a")
        sh("zfs", "create", "-o", "encryption=on", "-o", "keyformat=passphrase",
           "-o", "pbkdf2iters=100000", "-o", "keylocation=file://" + kb, m + "/b")
        sh("zfs", "create", m + "/a/c1")
        sh("zfs", "create", m + "/b/c2")
        sh("zfs", "create", "-V", "4M", m + "/b/vol")
        for ds, files in (("a/c1", {"x": b"1" * 5000, "d/y": b"2"}), ("b/c2", {"z": b"3"})):
            write_files(mountpoint(m + "/" + ds), files)
        sh("udevadm", "settle")
        sh("dd", "if=/dev/urandom", "of=/dev/zvol/%s/b/vol" % m, "bs=64k", "count=16",
           "oflag=direct")
        for ds in ("orig", "copy"):
            sh("zfs", "create", pool + "/" + ds)
        write_files(mountpoint(pool + "/orig"), {"a": b"same", "b": b"source", "c": b"only here"})
        write_files(mountpoint(pool + "/copy"), {"a": b"same", "b": b"replica", "d": b"new"})
        sh("zfs", "snapshot", "-r", pool + "@v1")
        for ds in ("b/c2", "b", "a/c1", "a"):
            sh("zfs", "unmount", m + "/" + ds)
        sh("zfs", "unload-key", m + "/a")
        sh("zfs", "unload-key", m + "/b")
        sh("zfs", "set", "keylocation=prompt", m + "/b")
        yield {"pool": pool, "multi": m, "keys": {"a": ka, "b": kb}}
    finally:
        destroy_pool(pool)
        shutil.rmtree(root, ignore_errors=True)


def mountpoint(ds):
    return sh("zfs", "get", "-Hp", "-o", "value", "mountpoint", ds).stdout.strip()


def write_files(top, files):
    for rel, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(top, rel)), exist_ok=True)
        with open(os.path.join(top, rel), "wb") as f:
            f.write(content)


def test_several_roots_with_their_own_keys_in_one_call(module, vpool, exec_log):
    m, keys = vpool["multi"], vpool["keys"]
    before = key_state(m)
    passphrase = read_key(keys["b"])
    spec = {"name": m, "keys": [{"encryptionroot": m + "/a", "key_file": keys["a"]},
                                {"encryptionroot": m + "/b", "key": passphrase}]}
    r = module("zfs_verify", spec)
    assert not r.failed and r["ok"], r
    got = by_name(r)
    assert set(got) == {m, m + "/a", m + "/a/c1", m + "/b", m + "/b/c2", m + "/b/vol"}
    assert all(d["status"] == "ok" and d["snapshot"] == "v1" for d in got.values())
    assert got[m + "/b/vol"]["type"] == "volume" and got[m + "/b/vol"]["bytes"] > 1 << 20
    assert sorted(r["keys_loaded"]) == [m + "/a", m + "/b"]
    assert len([line for line in exec_log("zfs") if " list " in line]) == 1
    no_secret_anywhere(passphrase, exec_log, r)

    f = module("zfs_verify", dict(spec, mode="files"))
    assert not f.failed, f
    got = by_name(f)
    assert got[m + "/b/vol"]["status"] == "skipped" and "volume" in got[m + "/b/vol"]["error"]
    assert got[m + "/a/c1"]["files"] == 2 and got[m + "/a/c1"]["bytes"] == 5001
    assert key_state(m) == before and our_mounts() == []


def test_a_prompt_keylocation_needs_a_key(module, vpool, exec_log):
    m = vpool["multi"]
    r = module("zfs_verify", {"name": m + "/b"})
    assert r.failed and "keylocation is prompt" in r["msg"] and "give key" in r["msg"]
    assert not [line for line in exec_log("zfs") if "load-key" in line]


def test_files_that_differ_from_the_source_are_named(module, vpool):
    pool = vpool["pool"]
    r = module("zfs_verify", {"name": pool + "/copy", "mode": "files",
                              "compare_files_with": pool + "/orig"})
    assert r.failed and r["failed_datasets"] == [pool + "/copy"]
    d = r["datasets"][0]
    assert d["mismatches"] == [{"path": "b", "problem": "different"},
                               {"path": "c", "problem": "missing"},
                               {"path": "d", "problem": "extra"}]
    assert d["error"] == "3 file(s) differ from %s/orig@v1" % pool
    assert our_mounts() == []
