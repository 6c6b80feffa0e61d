"""zfs_stream's decisions on hand-built trees: the stand-in target from bookmarks, the import
chain (the lab's tests/integration/test_zfs_stream.py proves the same against real ZFS)."""

import json
import os

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import stream
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import Dataset, Tree


def fs(name, root=None, **props):
    base = {"encryption": "aes-256-gcm" if root else "off", "encryptionroot": root,
            "keyformat": "hex" if root else "none", "written": 0}
    base.update(props)
    return Dataset(name, "filesystem", base)


def snap(name, txg, guid):
    return Dataset(name, "snapshot", {"guid": guid, "createtxg": txg})


def mark(name, txg, guid):
    return Dataset(name, "bookmark", {"guid": guid, "createtxg": txg})


def test_the_stand_in_target_is_what_the_newest_mark_of_that_site_says():
    src = Tree((fs("a/er", "a/er"), fs("a/er/c", "a/er"), fs("a/er/new", "a/er"),
                snap("a/er@s1", 10, 1), snap("a/er/c@s1", 10, 2), snap("a/er@s2", 20, 3), snap("a/er/c@s2", 20, 4),
                mark("a/er#bvs.site-b.s1", 10, 1), mark("a/er/c#bvs.site-b.s1", 10, 2),
                mark("a/er#bvs.site-b.s2", 20, 3), mark("a/er#bvs.site-c.s2", 20, 3),
                mark("a/er/c#bvs.site-bb.s2", 20, 4), mark("a/er/c#s2", 20, 4)))
    t = stream.recorded_target(src, "a/er", "site-b")
    assert [d.name for d in t.datasets] == ["a/er", "a/er/c"]  # a/er/new never travelled
    assert [(s.name, s["guid"]) for s in t.snapshots] == [("a/er@s2", 3), ("a/er/c@s1", 2)]
    assert t.get("a/er/c").encryptionroot == "a/er" and t.get("a/er")["keystatus"] == "unavailable"


def entry(kind, datasets, guids, base=None, base_guid=None, send="zfs send -w -R a/er@s"):
    return {"file": "00-x.zfs.age", "kind": kind, "datasets": datasets, "guids": guids,
            "base": base, "base_guid": base_guid, "send": send}


def manifest(created, *entries, snapshot="s"):
    return {"created": created, "snapshot": snapshot, "streams": list(entries)}


P1 = ("/c/p1", manifest("1", entry("full", ["a/er", "a/er/c"], {"a/er": "11", "a/er/c": "12"})))
P2 = ("/c/p2", manifest("2", entry("group", ["a/er", "a/er/c"], {"a/er": "21", "a/er/c": "22"}, "s1", "11")))
P3 = ("/c/p3", manifest("3", entry("group", ["a/er", "a/er/c"], {"a/er": "31", "a/er/c": "32"}, "s2", "21")))


def test_packages_chain_in_order_and_received_ones_are_skipped():
    empty = Tree(())
    pending, skipped, refusals = stream.plan_import([P3, P1, P2], empty, "a/er", "b/er", True)
    assert [p for p, _m in pending] == ["/c/p1", "/c/p2", "/c/p3"] and not skipped and not refusals
    at_p1 = Tree((fs("b/er", "b/er"), fs("b/er/c", "b/er"), snap("b/er@s1", 5, "11"), snap("b/er/c@s1", 5, "12")))
    pending, skipped, refusals = stream.plan_import([P1, P2, P3], at_p1, "a/er", "b/er", True)
    assert [p for p, _m in pending] == ["/c/p2", "/c/p3"] and skipped == ["p1"] and not refusals


def test_a_missing_middle_package_or_a_moved_target_is_named():
    at_p1 = Tree((fs("b/er", "b/er"), fs("b/er/c", "b/er"), snap("b/er@s1", 5, "11"), snap("b/er/c@s1", 5, "12")))
    pending, _skipped, refusals = stream.plan_import([P1, P3], at_p1, "a/er", "b/er", True)
    assert not pending and refusals and refusals[0].startswith("p3: b/er is not at the package's base s2")
    written = Tree((fs("b/er", "b/er", written=4096), fs("b/er/c", "b/er"), snap("b/er@s1", 5, "11")))
    _p, _s, refusals = stream.plan_import([P2], written, "a/er", "b/er", True)
    assert "changed since its last snapshot" in refusals[0]
    _p, _s, refusals = stream.plan_import([P1], Tree(()), "a/er", "b/er", False)
    assert "parent b does not exist" in refusals[0]
    _p, _s, refusals = stream.plan_import([P1], Tree((fs("b/er", None),)), "a/er", "b/er", True)
    assert "already exists" in refusals[0]


def test_receive_commands_keep_replicas_read_only_and_local_mountpoints():
    full = entry("full", ["a/er"], {"a/er": "1"})
    assert stream.recv_argv(full, "b/er") == ["zfs", "recv", "-u", "-o", "readonly=on", "-o",
                                              "blindvault:replica-of=a/er", "-x", "mountpoint", "b/er"]
    inc = dict(entry("incremental", ["a/er/c"], {"a/er/c": "2"}, "s1", "1", send="zfs send -w -I a/er/c@s1 a/er/c@s2"),
               key_id="k2")
    assert stream.recv_argv(inc, "b/er/c")[-3:] == ["-o", "blindvault:key-id=k2", "b/er/c"]


def test_nothing_written_since_the_last_package_means_nothing_to_export():
    src = Tree((fs("a/er", "a/er"), fs("a/er/c", "a/er"), snap("a/er@s1", 10, 1), snap("a/er/c@s1", 10, 2),
                mark("a/er#bvs.b.s1", 10, 1), mark("a/er/c#bvs.b.s1", 10, 2)))
    names = ["a/er", "a/er/c"]
    assert stream._nothing_new(src, stream.recorded_target(src, "a/er", "b"), names)
    busy = Tree(tuple(d if d.name != "a/er/c" else fs("a/er/c", "a/er", written=8192) for d in src.entries))
    assert not stream._nothing_new(busy, stream.recorded_target(busy, "a/er", "b"), names)
    newer = Tree(src.entries + (snap("a/er@s2", 20, 3), snap("a/er/c@s2", 20, 4)))
    assert not stream._nothing_new(newer, stream.recorded_target(newer, "a/er", "b"), names)
    assert not stream._nothing_new(src, stream.recorded_target(src, "a/er", "c"), names)


# -- export and import end to end, with trees served by hand and a stand-in zfs on PATH --------

def test_export_writes_a_package_and_marks_what_travelled_then_import_receives_it(site):
    before = Tree((fs("a/er", "a/er", referenced=1, **{"blindvault:key-id": "k1"}), fs("a/er/c", "a/er", referenced=1)))
    after = Tree(before.entries + (snap("a/er@t1", 10, 101), snap("a/er/c@t1", 10, 102)))
    site["trees"]["a/er/c"] = [Tree((before.get("a/er/c"),))]
    site["trees"]["a/er"] = [before, after]
    o = stream.ExportOptions("a/er/c", "site-b", str(site["tmp"] / "carrier"), [site["rcpt"]],
                             str(site["tmp"] / "k.pem"), snapshot="t1")
    res = stream.export(site["runner"](), o)
    assert res["changed"] and res["snapshot_taken"] and res["dataset"] == "a/er" and "R1" in res["warnings"][0]
    assert [s["kind"] for s in res["streams"]] == ["full"] and res["streams"][0]["sha256"]
    assert (site["tmp"] / "zpool.log").read_text() == "zpool sync a\n"  # written counts synced txgs
    log = (site["tmp"] / "log").read_text().splitlines()
    assert log[0] == "snapshot -r a/er@t1" and log[1] == "send -w -R a/er@t1"
    assert log[2].startswith("program -j a /dev/stdin a/er@t1 a/er#bvs.site-b.t1 a/er/c@t1 a/er/c#bvs.site-b.t1")
    manifest = json.loads(open(os.path.join(res["package"], "manifest.json")).read())["manifest"]
    assert manifest["streams"][0]["guids"] == {"a/er": "101", "a/er/c": "102"} and manifest["streams"][0]["key_id"] == "k1"

    site["trees"]["b/er"] = [Tree(()), Tree(())]
    site["trees"]["b"] = [Tree((fs("b"),))]
    i = stream.ImportOptions("a/er", "b/er", str(site["tmp"] / "carrier"), [str(site["tmp"] / "k.pub")],
                             str(site["tmp"] / "id"))
    got = stream.import_(site["runner"](), i)
    assert got["changed"] and [p["package"] for p in got["packages"]] == [os.path.basename(res["package"])]
    received = (site["tmp"] / "recv-b%er").read_bytes()
    assert received == b"stream of send -w -R a/er@t1\n" + bytes(200000)  # decrypted, byte for byte
    assert "recv -u -o readonly=on -o blindvault:replica-of=a/er -x mountpoint b/er" in \
        (site["tmp"] / "log").read_text()


def test_export_refusals_come_before_anything_runs(site):
    o = stream.ExportOptions("a/er", "site b", str(site["tmp"] / "carrier"), [site["rcpt"]], str(site["tmp"] / "k.pem"))
    with pytest.raises(Refusal, match="target_id"):
        stream.export(site["runner"](), o)
    o.target_id, o.recipients = "site-b", ["age1nope"]
    with pytest.raises(Refusal, match="recipients"):
        stream.export(site["runner"](), o)
    o.recipients, o.signing_key = [site["rcpt"]], str(site["tmp"] / "k.pub")
    with pytest.raises(Refusal, match="not an unencrypted PEM private key"):
        stream.export(site["runner"](), o)
    o.signing_key, o.directory = str(site["tmp"] / "k.pem"), str(site["tmp"] / "nowhere")
    with pytest.raises(Refusal, match="does not exist"):
        stream.export(site["runner"](), o)
    assert not (site["tmp"] / "log").exists()
