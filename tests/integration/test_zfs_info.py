"""zfs_info against ZFS 2.1.11: key-less hazard detection on real damaged replicas."""

import os
import subprocess

import pytest

from helpers import sh
from zfs_scenarios import PAYLOAD


def hazards_by_dataset(result):
    return {(h["dataset"], h["reason"]) for h in result["hazards"]}


def test_keyless_hazards_name_each_damaged_child(module, zfs_lab):
    dst = zfs_lab["dst"]
    r = module("zfs_info", {"name": dst})
    assert not r.failed, r
    assert not r["changed"] and r["exists"]
    assert hazards_by_dataset(r) == {
        (dst + "/pp-hex/child", "keyformat"),
        (dst + "/hex-pp/child", "keyformat"),
        (dst + "/pp-pp/child", "pbkdf2"),
    }
    for h in r["hazards"]:
        assert h["encryptionroot"] == h["dataset"].rsplit("/", 1)[0]
    # All of it without a key: every replica key is unavailable.
    roots = {er["name"]: er for er in r["encryption_roots"]}
    assert all(er["keystatus"] == "unavailable" for er in roots.values())
    assert roots[dst + "/healthy"]["members"] == [dst + "/healthy", dst + "/healthy/child"]


def test_the_source_side_is_healthy(module, zfs_lab):
    r = module("zfs_info", {"name": zfs_lab["src"]})
    assert r["hazards"] == []
    snaps = {s["name"]: s for s in r["snapshots"]}
    assert snaps[zfs_lab["src"] + "/healthy/child@s2"]["dataset"] == zfs_lab["src"] + "/healthy/child"
    assert isinstance(snaps[zfs_lab["src"] + "/healthy@s1"]["guid"], int)


def _mount_child_with_root_key(ds, keyfile):
    """Load the replica root's key from keyfile and try to mount its child; unload after."""
    sh("zfs", "load-key", "-L", "file://" + keyfile, ds)
    try:
        return subprocess.run(["zfs", "mount", ds + "/child"], capture_output=True, text=True, check=False)
    finally:
        subprocess.run(["zfs", "unmount", ds + "/child"], capture_output=True, check=False)
        subprocess.run(["zfs", "unload-key", ds], capture_output=True, check=False)


def test_hex_to_hex_is_the_blind_spot_only_a_keyed_read_finds(module, zfs_lab):
    dst, keys = zfs_lab["dst"], zfs_lab["keys"]
    r = module("zfs_info", {"name": dst + "/hex-hex"})
    assert r["hazards"] == []  # nothing visible without the key...
    # ...yet the replica's root still takes the OLD key and its child cannot be read.
    mount = _mount_child_with_root_key(dst + "/hex-hex", keys["hex-hex"]["old"])
    assert mount.returncode != 0 and "ermission denied" in mount.stderr
    # The healthy replica (root and child sent together) opens with the new key.
    ok = _mount_child_with_root_key(dst + "/healthy", keys["healthy"]["new"])
    assert ok.returncode == 0, ok.stderr


def test_healthy_replica_reads_back_byte_equal(zfs_lab):
    dst, keys = zfs_lab["dst"], zfs_lab["keys"]
    ds = dst + "/healthy"
    sh("zfs", "load-key", "-L", "file://" + keys["healthy"]["new"], ds)
    try:
        sh("zfs", "mount", ds + "/child")
        mnt = sh("zfs", "get", "-Hp", "-o", "value", "mountpoint", ds + "/child").stdout.strip()
        with open(os.path.join(mnt, "payload"), "rb") as f:
            assert f.read() == PAYLOAD
    finally:
        sh("zfs", "unmount", ds + "/child")
        sh("zfs", "unload-key", ds)


def test_compare_with_finds_structure_and_key_id(module, zfs_lab):
    src, dst = zfs_lab["src"], zfs_lab["dst"]
    key = os.path.join(zfs_lab["keydir"], "solo")
    with open(key, "w") as f:
        f.write("ab" * 32)
    sh("zfs", "create", "-o", "encryption=on", "-o", "keyformat=hex",
       "-o", "keylocation=file://" + key, "-o", "blindvault:key-id=k2", src + "/solo")
    sh("zfs", "create", src + "/solo/child")
    sh("zfs", "snapshot", "-r", src + "/solo@s1")
    # Per-dataset full raw sends (what a naive tool does) make the child its own root.
    for ds in ("/solo", "/solo/child"):
        sh("sh", "-c", "zfs send -w %s%s@s1 | zfs recv -u %s%s" % (src, ds, dst, ds))
    sh("zfs", "set", "blindvault:key-id=k1", dst + "/solo")
    r = module("zfs_info", {"name": dst + "/solo", "compare_with": src + "/solo"})
    assert hazards_by_dataset(r) == {(dst + "/solo/child", "structure"),
                                     (dst + "/solo", "key-id")}
    detail = [h["detail"] for h in r["hazards"] if h["reason"] == "structure"][0]
    assert "its own encryption root" in detail and "-R" in detail


@pytest.mark.full  # test_zfs_dataset::test_noop_cost_is_constant_in_the_number_of_datasets guards the same in make test
def test_process_count_is_constant_in_tree_size(module, zfs_lab, exec_log):
    src = zfs_lab["src"]
    sh("zfs", "create", src + "/small")
    sh("zfs", "create", src + "/small/a")
    # 45 nested datasets in one process (zfs create -p).
    sh("zfs", "create", "-p", src + "/big/" + "/".join("d%02d" % i for i in range(44)))
    counts = {}
    for tree in ("small", "big"):
        before = len(exec_log("zfs"))
        r = module("zfs_info", {"name": "%s/%s" % (src, tree)})
        counts[tree] = (len(exec_log("zfs")) - before, len(r["datasets"]))
    assert counts["small"][1] == 2 and counts["big"][1] == 45
    assert counts["small"][0] == counts["big"][0] == 1, counts


def test_query_filters_with_jmespath(module, zfs_lab):
    r = module("zfs_info", {"name": zfs_lab["dst"],
                            "query": "hazards[?reason=='pbkdf2'].dataset"})
    assert r["query_result"] == [zfs_lab["dst"] + "/pp-pp/child"]


@pytest.mark.parametrize("args,message", [
    ({"name": "bvdst", "query": "hazards[?"}, "query"),
    ({"name": "bvdst", "compare_with": "bvsrc/nope"}, "does not exist"),
    ({"name": "bvdst", "recursive": "sometimes"}, "recursive"),
])
def test_bad_input_fails_clearly(module, zfs_lab, args, message):
    r = module("zfs_info", args)
    assert r.failed and message in r["msg"] and "Traceback" not in r["msg"], r


def test_missing_dataset_is_reported_not_failed(module, zfs_lab):
    r = module("zfs_info", {"name": zfs_lab["dst"] + "/nope"}, check=True)
    assert not r.failed and r["exists"] is False and r["datasets"] == []
