"""zfs_snapshot and zfs_bookmark against ZFS 2.1.11."""

import pytest

from helpers import node_name, sh


def names(pattern_root, kind):
    out = sh("zfs", "list", "-Hp", "-t", kind, "-o", "name", "-r", pattern_root).stdout
    return set(out.split())


@pytest.fixture
def tree(module, zpool, request):
    top = "%s/%s" % (zpool["name"], node_name(request))
    module("zfs_dataset", {"datasets": [{"name": top}, {"name": top + "/a"},
                                        {"name": top + "/a/b"}]})
    yield top
    sh("zfs", "destroy", "-R", top, check=False)


def test_recursive_snapshot_with_holds_idempotent(module, tree, exec_log):
    args = {"name": tree + "@s1", "recursive": True, "holds": ["keep"]}
    plan = module("zfs_snapshot", args, check=True)
    assert plan["changed"] and not names(tree, "snapshot")
    before = len(exec_log("zfs"))
    r = module("zfs_snapshot", args)
    assert len(exec_log("zfs")) - before == 3  # read, snapshot -r, hold
    assert r["changed"] and names(tree, "snapshot") == {tree + "@s1", tree + "/a@s1", tree + "/a/b@s1"}
    holds = sh("zfs", "holds", "-H", tree + "@s1", tree + "/a/b@s1").stdout
    assert holds.count("keep") == 2
    assert not module("zfs_snapshot", args)["changed"]


def test_two_trees_in_one_transaction(module, tree, zpool):
    other = zpool["name"] + "/other-" + tree.rsplit("/", 1)[1]
    module("zfs_dataset", {"name": other})
    try:
        r = module("zfs_snapshot", {"recursive": True,
                                    "snapshots": [{"name": tree + "@t"}, {"name": other + "@t"}]})
        assert [a["action"] for a in r["actions"]] == ["snapshot"]
        txg = sh("zfs", "get", "-Hp", "-o", "value", "createtxg", tree + "@t", other + "@t").stdout.split()
        assert txg[0] == txg[1]  # same transaction group: atomic
    finally:
        sh("zfs", "destroy", "-r", other, check=False)


def test_partial_recursive_snapshot_is_refused(module, tree):
    sh("zfs", "snapshot", tree + "/a@p")
    r = module("zfs_snapshot", {"name": tree + "@p", "recursive": True})
    assert r.failed and "atomic" in r["msg"]
    assert tree + "@p" not in names(tree, "snapshot")


def test_destroy_bookmarks_first_and_respects_replication_holds(module, tree):
    module("zfs_snapshot", {"name": tree + "@d1", "recursive": True})
    sh("zfs", "hold", "blindvault:carrier/x", tree + "/a@d1")
    refused = module("zfs_snapshot", {"name": tree + "@d1", "recursive": True, "state": "absent"})
    assert refused.failed and "held by replication" in refused["msg"]
    assert tree + "/a@d1" in names(tree, "snapshot")
    r = module("zfs_snapshot", {"name": tree + "@d1", "recursive": True, "state": "absent",
                                "force": True})
    assert r["changed"] and not names(tree, "snapshot")
    assert names(tree, "bookmark") == {tree + "#d1", tree + "/a#d1", tree + "/a/b#d1"}
    assert not module("zfs_snapshot", {"name": tree + "@d1", "state": "absent"})["changed"]


def test_bookmark_present_absent_and_guid_mismatch(module, tree):
    sh("zfs", "snapshot", tree + "@m1")
    sh("zfs", "snapshot", tree + "@m2")
    plan = module("zfs_bookmark", {"snapshot": tree + "@m1", "bookmark": "m1"}, check=True)
    assert plan["changed"] and not names(tree, "bookmark")
    r = module("zfs_bookmark", {"snapshot": tree + "@m1", "bookmark": "m1"}, diff=True)
    assert r["diff"] == {"before": {"exists": False}, "after": {"exists": True}}
    assert r["changed"] and r["bookmark"] == tree + "#m1" and tree + "#m1" in names(tree, "bookmark")
    guid = sh("zfs", "get", "-Hp", "-o", "value", "guid", tree + "@m1").stdout.strip()
    assert str(r["guid"]) == guid
    assert not module("zfs_bookmark", {"snapshot": tree + "@m1", "bookmark": "m1"})["changed"]
    wrong = module("zfs_bookmark", {"snapshot": tree + "@m2", "bookmark": tree + "#m1"})
    assert wrong.failed and "another snapshot" in wrong["msg"]
    gone = module("zfs_bookmark", {"bookmark": tree + "#m1", "state": "absent"})
    assert gone["changed"] and tree + "#m1" not in names(tree, "bookmark")


@pytest.mark.parametrize("module_name,args,message", [
    ("zfs_snapshot", {"name": "bvds/nosuch@s"}, "do not exist"),
    ("zfs_snapshot", {"name": "bvds"}, "not a snapshot name"),
    ("zfs_snapshot", {"snapshots": [{"name": "bvds@x"}, {"name": "bvds@x"}]}, "more than once"),
    ("zfs_bookmark", {"bookmark": "bvds#b"}, "needs snapshot"),
    ("zfs_bookmark", {"snapshot": "bvds@nosnap", "bookmark": "b"}, "does not exist"),
    ("zfs_bookmark", {"snapshot": "bvds@s", "bookmark": "other/ds#b"}, "must be on the snapshot's dataset"),
])
def test_bad_input(module, zpool, module_name, args, message):
    r = module(module_name, args)
    assert r.failed and message in r["msg"], r
