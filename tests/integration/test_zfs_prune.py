"""zfs_prune against ZFS 2.1.11: replica bases, holds, bookmarks, match, clones and an
interrupted receive, with real outcomes (the next incremental still goes through).

Snapshots here are all taken within seconds: the hour/day/week/month rules are tested with
fabricated creation times in tests/unit/plugins/module_utils/zfs/test_prune.py.
"""

import os
import secrets

import pytest

from helpers import node_name, sh
from zfs_scenarios import pipe


def guids(root, kind="all"):
    """{name: guid} of everything of ``kind`` under root, from one zfs list."""
    out = sh("zfs", "list", "-Hp", "-t", kind, "-o", "name,guid", "-r", root).stdout
    return {n: int(g) for n, g in (line.split("\t") for line in out.splitlines())}


def names(root, kind):
    return set(guids(root, kind))


def guid(name):
    return int(sh("zfs", "get", "-Hp", "-o", "value", "guid", name).stdout)


MOUNTS = {}


def write(ds, fname, size=4096):
    if ds not in MOUNTS:
        MOUNTS[ds] = sh("zfs", "get", "-Hp", "-o", "value", "mountpoint", ds).stdout.strip()
    with open(os.path.join(MOUNTS[ds], fname), "wb") as f:
        f.write(os.urandom(size))


def snapshots(ds, shorts, recursive=False):
    for s in shorts:
        write(ds, s)
        sh("zfs", "snapshot", *(["-r"] if recursive else []), "%s@%s" % (ds, s))


@pytest.fixture
def top(module, zpool, request):
    top = "%s/%s" % (zpool["name"], node_name(request))
    sh("zfs", "create", top)
    yield top
    sh("zfs", "destroy", "-R", top, check=False)


@pytest.fixture
def encrypted(top, zpool, request):
    """top/src (a hex encryption root) with a child top/src/c."""
    key = os.path.join(zpool["root"], node_name(request) + ".key")
    with open(key, "w") as f:
        f.write(secrets.token_hex(32))
    src = top + "/src"
    sh("zfs", "create", "-o", "encryption=aes-256-gcm", "-o", "keyformat=hex",
       "-o", "keylocation=file://" + key, src)
    sh("zfs", "create", src + "/c")
    return src


def test_keep_last_keeps_the_replica_base_and_holds_and_the_next_incremental_works(
        module, top, encrypted, exec_log):
    src, rep = encrypted, top + "/rep"
    snapshots(src, ["s1", "s2"], recursive=True)
    pipe(["zfs", "send", "-w", "-R", src + "@s2"], ["zfs", "recv", "-u", rep])
    sh("zfs", "create", src + "/new")  # no replica yet: pruned on its own rules, with a warning
    snapshots(src, ["s3", "s4", "s5"], recursive=True)
    sh("zfs", "hold", "keep", src + "@s1")
    was = guids(src, "snapshot")
    before = set(was)
    args = {"name": src, "recursive": True, "keep_last": 1, "targets": [rep]}
    going = [src + "@s3", src + "@s4", src + "/c@s1", src + "/c@s3", src + "/c@s4",
             src + "/new@s3", src + "/new@s4"]

    plan = module("zfs_prune", args, check=True, diff=True)
    assert not plan.failed, plan
    assert plan["changed"] and plan["destroyed"] == going
    assert names(src, "snapshot") == before and not names(src, "bookmark")  # nothing touched
    assert plan["held"] == [{"name": src + "@s1", "tags": ["keep"]}]
    kept = {k["name"]: k["reasons"] for k in plan["kept"]}
    assert kept == {src + "@s1": ["held"], src + "@s2": ["base of %s" % rep],
                    src + "@s5": ["keep_last", "newest"], src + "/c@s2": ["base of %s/c" % rep],
                    src + "/c@s5": ["keep_last", "newest"], src + "/new@s5": ["keep_last", "newest"]}
    assert "no replica on %s of %s/new: nothing kept for it there" % (rep, src) in str(plan["warnings"])
    assert plan["bookmarks"] == [g.replace("@", "#") for g in going]
    assert set(plan["diff"]["before"]["snapshots"]) == before
    assert set(plan["diff"]["after"]["snapshots"]) == before - set(going)
    assert [a["command"] for a in plan["actions"] if a["action"] == "destroy"] == [
        "zfs destroy %s@s3,s4" % src, "zfs destroy %s/c@s1,s3,s4" % src, "zfs destroy %s/new@s3,s4" % src]

    calls = len(exec_log("zfs"))
    r = module("zfs_prune", args)
    assert not r.failed, r
    # one list of the source, one zfs holds, one list of the target, the 7 bookmarks in one
    # channel program (one transaction group), 3 destroys
    assert len(exec_log("zfs")) - calls == 7, exec_log("zfs")[calls:]
    assert exec_log("zfs")[calls + 3].startswith("zfs program -j %s /dev/stdin" % top.split("/")[0])
    assert r["changed"] and r["destroyed"] == going
    now = guids(src)
    assert {n for n in now if "@" in n} == before - set(going)
    # a bookmark of each destroyed snapshot, marking that very snapshot (same guid)
    assert {n: g for n, g in now.items() if "#" in n} == {g.replace("@", "#"): was[g] for g in going}
    assert sh("zfs", "holds", "-H", src + "@s1").stdout.split("\t")[1] == "keep"  # never released

    again = module("zfs_prune", args)
    assert not again["changed"] and again["destroyed"] == [] and again["bookmarks"] == []

    # the bases survived: bare per-dataset raw incrementals reach the replica, root first
    for rel in ("", "/c"):
        pipe(["zfs", "send", "-w", "-i", "@s2", src + rel + "@s5"], ["zfs", "recv", "-u", rep + rel])
    got = guids(rep, "snapshot")
    assert got[rep + "@s5"] == was[src + "@s5"] and got[rep + "/c@s5"] == was[src + "/c@s5"]


def test_match_newest_existing_bookmarks_and_clones(module, top):
    ds = top + "/m"
    sh("zfs", "create", ds)
    snapshots(ds, ["auto-1", "manual", "auto-2", "auto-3"])
    sh("zfs", "bookmark", ds + "@auto-1", ds + "#mine")
    r = module("zfs_prune", {"name": ds, "keep_last": 0, "match": "auto-*"})
    assert not r.failed, r
    assert r["destroyed"] == [ds + "@auto-1", ds + "@auto-2"]
    assert r["kept"] == [{"name": ds + "@auto-3", "reasons": ["newest"]}]
    assert names(ds, "snapshot") == {ds + "@manual", ds + "@auto-3"}
    # auto-1 had a bookmark already (another name, same guid): only auto-2 got one
    assert r["bookmarks"] == [ds + "#auto-2"] and names(ds, "bookmark") == {ds + "#mine", ds + "#auto-2"}

    snapshots(ds, ["auto-4"])
    sh("zfs", "clone", ds + "@manual", top + "/cl")
    r = module("zfs_prune", {"name": ds, "keep_last": 0, "bookmark_before_destroy": False})
    assert r["destroyed"] == [ds + "@auto-3"] and r["bookmarks"] == []
    assert r["kept"] == [{"name": ds + "@manual", "reasons": ["origin of %s/cl" % top]},
                         {"name": ds + "@auto-4", "reasons": ["newest"]}]
    assert names(ds, "snapshot") == {ds + "@manual", ds + "@auto-4"}
    assert ds + "#auto-3" not in names(ds, "bookmark")


def test_interrupted_receives_keep_their_resume_points(module, top):
    """An interrupted incremental (rep) and an interrupted seed (seed, no snapshot yet)."""
    ds, rep, seed = top + "/r", top + "/rep", top + "/seed"
    sh("zfs", "create", ds)
    snapshots(ds, ["a"])
    pipe(["zfs", "send", ds + "@a"], ["zfs", "recv", "-u", rep])
    write(ds, "big", 2 << 20)
    sh("zfs", "snapshot", ds + "@b")
    snapshots(ds, ["c", "d"])
    tokens = {}
    for target, send in ((rep, "-i @a %s@b" % ds), (seed, "%s@b" % ds)):
        cut = sh("bash", "-c", "zfs send %s | head -c 300000 | zfs recv -s -u %s" % (send, target),
                 check=False)
        assert cut.returncode != 0
        tokens[target] = sh("zfs", "get", "-Hp", "-o", "value", "receive_resume_token",
                            target).stdout.strip()
        assert tokens[target] not in ("", "-")

    r = module("zfs_prune", {"name": ds, "keep_last": 1, "targets": [rep, seed]})
    assert not r.failed, r
    assert r["destroyed"] == [ds + "@c"]
    assert {k["name"]: k["reasons"] for k in r["kept"]} == {
        ds + "@a": ["base of %s" % rep], ds + "@b": ["resume of %s" % rep, "resume of %s" % seed],
        ds + "@d": ["keep_last", "newest"]}
    # the interrupted receives finish, and the next incrementals start from them
    for target in (rep, seed):
        pipe(["zfs", "send", "-t", tokens[target]], ["zfs", "recv", "-s", "-u", target])
        pipe(["zfs", "send", "-i", "@b", ds + "@d"], ["zfs", "recv", "-u", target])
        assert guid(target + "@d") == guid(ds + "@d")


def test_bad_input_touches_nothing(module, top):
    ds, stranger = top + "/x", top + "/stranger"
    sh("zfs", "create", ds)
    sh("zfs", "create", stranger)
    snapshots(ds, ["s1", "s2", "s3"])
    snapshots(stranger, ["s1"])  # same short name, another guid
    before = names(top, "all")
    for args, message in [
        ({"name": ds}, "no retention rule given"),
        ({"name": ds, "keep_last": -1}, "at least 0"),
        ({"name": top + "/nosuch", "keep_last": 1}, "does not exist"),
        ({"name": ds, "keep_last": 1, "targets": [top + "/nosuch"]},
         "target %s/nosuch does not exist" % top),
        ({"name": ds, "keep_last": 1, "targets": [stranger]}, "share no snapshot (by guid)"),
        ({"name": ds, "keep_last": 1, "targets": [top]}, "overlaps"),
    ]:
        r = module("zfs_prune", args)
        assert r.failed and message in r["msg"], (args, r)
        assert "Traceback" not in r["msg"]
    assert names(top, "all") == before
