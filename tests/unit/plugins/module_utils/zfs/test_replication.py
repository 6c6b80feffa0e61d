"""The replication planner's decisions, on small hand-built trees (pure: no processes).

The lab integration tests (tests/integration/test_zfs_replicate.py) prove the same
decisions against real ZFS; these pin each rule down where it is decided.
"""

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import replication as rep
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import Dataset, Tree

GUIDS = {}


def guid(name):
    """A stable guid per snapshot name; a target snapshot names its source's to share it."""
    return GUIDS.setdefault(name, len(GUIDS) + 1000)


def fs(name, root=None, **props):
    """A filesystem; ``root``: its encryption root (itself for a root), None = unencrypted."""
    base = {"encryption": "aes-256-gcm" if root else "off", "encryptionroot": root,
            "keyformat": "hex" if root else "none", "keystatus": "unavailable",
            "written": 0, "referenced": 1 << 20, "createtxg": 1}
    base.update(props)
    return Dataset(name, "filesystem", base)


def snap(name, txg, guid_=None, **props):
    return Dataset(name, "snapshot", dict({"guid": guid_ or guid(name), "createtxg": txg,
                                           "written": 4096}, **props))


def tree(*entries, holds=None):
    return Tree(entries=tuple(entries), holds=holds or {})


def opts(**kw):
    o = rep.Options(source=kw.pop("source", "a/er"), target=kw.pop("target", "c/er"), **kw)
    rep.validate(o)
    return o


def plan(src, dst, o=None, snapshot="s2", new=True, parent=fs("c")):
    o = o or opts()
    return rep.plan_replication(src, dst, o, o.source, o.target, snapshot, new, parent)


def group_src(*extra):
    return tree(fs("a/er", "a/er", **{"blindvault:key-id": "k2"}), fs("a/er/c", "a/er"),
                snap("a/er@s1", 10), snap("a/er/c@s1", 10), *extra)


def group_dst(*extra):
    return tree(fs("c/er", "c/er"), fs("c/er/c", "c/er"),
                snap("c/er@s1", 5, guid("a/er@s1")), snap("c/er/c@s1", 5, guid("a/er/c@s1")), *extra)


def test_a_seed_is_one_raw_recursive_stream_that_keeps_mountpoints_local():
    p = plan(group_src(), tree())
    assert [s.kind for s in p.streams] == ["full"]
    st = p.streams[0]
    assert st.send == ["zfs", "send", "-w", "-R", "a/er@s2"]
    assert st.recv[-1] == "c/er" and "-u" in st.recv and "-s" in st.recv
    assert "readonly=on" in st.recv and "blindvault:replica-of=a/er" in st.recv
    assert "-x" in st.recv and "mountpoint" in st.recv
    assert not any(a.startswith("blindvault:key-id") for a in st.recv)  # -R carries it (R8)
    assert [m.action for m in p.members] == ["full", "full"]
    assert p.take_snapshot == ["zfs", "snapshot", "-r", "a/er@s2"]


def test_steady_state_is_one_replication_stream_of_the_group():
    p = plan(group_src(), group_dst())
    assert [s.send for s in p.streams] == [["zfs", "send", "-w", "-R", "-I", "@s1", "a/er@s2"]]
    assert p.streams[0].datasets == ["a/er", "a/er/c"] and "-F" not in p.streams[0].recv
    assert not any(a.startswith("blindvault:key-id") for a in p.streams[0].recv)  # carried (R8)
    assert p.refused == {}


def test_members_at_different_bases_go_one_by_one_root_first_recording_the_key_generation():
    # the seeds' incident: the child alone went ahead to s1b; the root still sits at s1
    src = group_src(snap("a/er/c@s1b", 11))
    dst = group_dst(snap("c/er/c@s1b", 6, guid("a/er/c@s1b")))
    p = plan(src, dst)
    assert [s.send for s in p.streams] == [
        ["zfs", "send", "-w", "-I", "a/er@s1", "a/er@s2"],
        ["zfs", "send", "-w", "-I", "a/er/c@s1b", "a/er/c@s2"]]
    for st in p.streams:
        assert "blindvault:key-id=k2" in st.recv and "-F" not in st.recv


def test_a_child_only_source_is_widened_to_its_group_or_refused():
    class Runner:
        check_mode = True

        def __init__(self):
            self.reads = []

        def run(self, argv, **kw):
            self.reads.append(argv[-1])
            text = {"a/er/c": "a/er/c\tfilesystem\ta/er\n", "a/er": "a/er\tfilesystem\ta/er\n"}
            return type("R", (), {"rc": 0, "stdout": _tsv(argv, text[argv[-1]]), "stderr": ""})

    o = rep.Options(source="a/er/c", target="c/er/c")
    src, top, target_top, warnings = rep.resolve_tops(Runner(), o)
    assert (top, target_top) == ("a/er", "c/er") and "R1" in warnings[0]
    with pytest.raises(Refusal, match="source: a/er"):
        rep.resolve_tops(Runner(), rep.Options(source="a/er/c", target="c/other"))
    with pytest.raises(Refusal, match="R1"):
        rep.resolve_tops(Runner(), rep.Options(source="a/er", target="c/er", recursive=False))


def _tsv(argv, line):
    cols = argv[argv.index("-o") + 1].split(",")
    name, kind, root = line.strip().split("\t")
    vals = {"name": name, "type": kind, "encryption": "aes-256-gcm", "encryptionroot": root}
    return "\t".join(vals.get(c, "-") for c in cols) + "\n"


def test_a_new_member_sends_the_group_as_one_replication_stream():
    src = group_src(fs("a/er/new", "a/er"), snap("a/er@s2", 12), snap("a/er/c@s2", 12),
                    snap("a/er/new@s2", 12))
    p = plan(src, group_dst(), snapshot="s2", new=False)
    assert [s.kind for s in p.streams] == ["group"]
    assert p.streams[0].send == ["zfs", "send", "-w", "-R", "-I", "@s1", "a/er@s2"]
    assert "new member" in [m for m in p.members if m.source == "a/er/new"][0].reason


def test_target_snapshots_newer_than_the_base_need_force_rollback_and_are_listed():
    dst = group_dst(snap("c/er/c@local", 7))
    p = plan(group_src(), dst)
    assert "a/er" in p.refused and "force_rollback" in p.refused["a/er"]
    assert all(s.status == "skipped" for s in p.streams)  # the whole group waits (R5)
    p = plan(group_src(), dst, opts(force_rollback=True))
    child = [m for m in p.members if m.source == "a/er/c"][0]
    assert child.destroys == ["c/er/c@local"]
    assert "-F" in p.streams[1].recv and "-F" not in p.streams[0].recv


def test_an_orphan_member_blocks_its_group_until_allowed():
    dst = group_dst(fs("c/er/gone", "c/er"))
    p = plan(group_src(), dst)
    assert "R6" in p.refused["a/er"]
    assert [h["reason"] for h in p.hazards] == ["orphan"]
    p = plan(group_src(), dst, opts(allow_orphans=True))
    assert p.refused == {} and [h["dataset"] for h in p.hazards] == ["c/er/gone"]


def test_filters_take_whole_groups_and_refuse_what_a_stream_cannot_leave_out():
    src = tree(fs("a/top"), fs("a/top/x", "a/top/x"), fs("a/top/y", "a/top/y"),
               fs("a/top/x/inner", "a/top/x/inner"))
    o = opts(source="a/top", target="c/top", exclude=["y"])
    p = plan(src, tree(), o)
    assert p.refused  # the seed of a/top (-R) would carry the excluded group y
    assert "R7" in list(p.refused.values())[0]
    o = opts(source="a/top", target="c/top", exclude=["x/inner"])
    p = plan(src, tree(fs("c/top")), o)
    assert "R7" in p.refused["a/top/x"]  # x's -R seed would carry x/inner
    o = opts(source="a/top", target="c/top", include=["x*"])
    p = plan(src, tree(fs("c/top")), o)
    assert p.refused == {} and {m.source for m in p.members} == {"a/top/x", "a/top/x/inner"}


def test_structure_lost_on_the_target_is_restored_by_the_group_stream_or_refused():
    # a member that became its own root on the target (a resumed child): the group stream fixes it
    dst = group_dst(snap("c/er@s0", 1, guid("a/er@s0")))
    dst = tree(*[e if e.name != "c/er/c" else fs("c/er/c", "c/er/c") for e in dst.entries])
    o = opts()
    p = rep.plan_replication(group_src(), dst, o, o.source, o.target, "s2", True, fs("c"),
                             resumed=["c/er/c"])
    assert [s.kind for s in p.streams] == ["group"]
    p = plan(group_src(), dst)  # not resumed by this run: refused with the keyed fix
    assert "change-key -i c/er/c" in p.refused["a/er"]
    # a source member that became its own root (change-key at the source): refused with the fix
    src = tree(*[e if e.name != "a/er/c" else fs("a/er/c", "a/er/c") for e in group_src().entries])
    p = plan(src, group_dst())
    assert "change-key" in p.refused["a/er/c"]


def test_no_common_snapshot_is_refused_never_destroyed():
    dst = tree(fs("c/er", "c/er"), snap("c/er@other", 3, 99))
    p = plan(group_src(), dst)
    assert "share no snapshot" in p.refused["a/er"]


def test_up_to_date_when_the_target_has_the_snapshot():
    src = group_src(snap("a/er@s2", 20), snap("a/er/c@s2", 20))
    dst = group_dst(snap("c/er@s2", 8, guid("a/er@s2")), snap("c/er/c@s2", 8, guid("a/er/c@s2")))
    p = plan(src, dst, snapshot="s2", new=False)
    assert p.streams == [] and {m.action for m in p.members} == {"up to date"}


def test_a_relay_sends_the_newest_snapshot_all_members_share():
    src = group_src(snap("a/er@s2", 20), fs("a/er/n", "a/er"), snap("a/er/n@s2", 20))
    src = tree(*[e if e.name != "a/er" else fs("a/er", "a/er", **{"blindvault:replica-of": "x/er"})
                 for e in src.entries])
    short, new = rep._choose_snapshot(src, "a/er", opts(), ["a/er", "a/er/n"], 0)
    assert (short, new) == ("s2", False)
    with pytest.raises(Refusal, match="R2"):
        rep._choose_snapshot(src, "a/er", opts(), ["a/er/c", "a/er/n"], 0)


def test_an_origin_snapshot_name_is_rendered_in_utc_and_reused_only_when_whole():
    src = group_src(snap("a/er@daily-19700101", 30))
    o = opts(snapshot="daily-%Y%m%d")
    with pytest.raises(Refusal, match="atomic"):
        rep._choose_snapshot(src, "a/er", o, ["a/er", "a/er/c"], 0)
    assert rep._choose_snapshot(group_src(), "a/er", o, ["a/er", "a/er/c"], 86400) == \
        ("daily-19700102", True)


@pytest.mark.parametrize("value,want", [("auto", "auto"), (True, True), ("no", False), ("on", True)])
def test_raw_setting(value, want):
    assert rep.raw_setting(value) == want


@pytest.mark.parametrize("kw,msg", [
    (dict(source="a/er", target="a/er/x"), "overlap"),
    (dict(source="a/er", target="c"), "pool's root"),
    (dict(source="a/er", target="c/er", raw="maybe"), "raw must be"),
    (dict(source="a/er", target="c/er", snapshot="x@y"), "snapshot"),
    (dict(source="a/er", target="c/er", properties={"blindvault:key-id": "x"}), "managed"),
    (dict(source="a/er bad", target="c/er"), "not a dataset name"),
])
def test_bad_input_is_refused_before_anything_runs(kw, msg):
    with pytest.raises(Refusal, match=msg):
        rep.validate(rep.Options(**kw))


def test_raw_false_on_encrypted_data_needs_decrypt():
    p = plan(group_src(), group_dst(), opts(raw=False))
    assert "decrypt" in p.refused["a/er"]


def test_decrypted_copies_go_per_dataset_under_the_targets_own_root():
    """ZFS will not send encrypted data decrypted with properties (-R): each dataset goes on its
    own, parent first, and lands under the target's encryption root (its structure, no key-id)."""
    o = opts(raw=False, decrypt=True, target="enc/data")
    p = plan(group_src(), tree(), o, parent=fs("enc", "enc", keystatus="available"))
    assert p.refused == {}
    assert [(s.send, s.recv[-1]) for s in p.streams] == [
        (["zfs", "send", "a/er@s2"], "enc/data"), (["zfs", "send", "a/er/c@s2"], "enc/data/c")]
    assert not any("key-id" in a or a == "mountpoint" for st in p.streams for a in st.recv)
    dst = tree(fs("enc/data", "enc"), fs("enc/data/c", "enc"),
               snap("enc/data@s1", 5, guid("a/er@s1")), snap("enc/data/c@s1", 5, guid("a/er/c@s1")))
    p = plan(group_src(), dst, o)
    assert p.refused == {}
    assert [s.send for s in p.streams] == [["zfs", "send", "-I", "a/er@s1", "a/er@s2"],
                                           ["zfs", "send", "-I", "a/er/c@s1", "a/er/c@s2"]]


def test_sizes_are_parsed_from_zfs_send_verbose_output():
    text = "full\ta/er@s1\t12345\nincremental\ts1\ta/er/c@s2\t999\nsize\t13344\n"
    assert rep._parse_sizes(text) == 13344
    assert rep._parse_sizes("12:00:01\t4096\ta/er@s2\n") is None


def test_a_child_waits_when_its_parents_seed_is_refused():
    src = tree(fs("a/p"), fs("a/p/sub"))
    parent = fs("c/enc", "c/enc", keystatus="unavailable")
    p = plan(src, tree(), opts(source="a/p", target="c/enc/p"), parent=parent)
    assert "R9" in p.refused["a/p"] and "a/p" in p.refused["a/p/sub"]
    assert p.take_snapshot is None


def test_members_left_behind_by_an_interrupted_stream_catch_up_before_the_group_stream():
    # -R -I @s1 a/er@s2 was cut: the root got s2, the child did not, the new member came alone
    src = group_src(fs("a/er/new", "a/er"), snap("a/er@s2", 12), snap("a/er/c@s2", 12),
                    snap("a/er/new@s2", 12), snap("a/er@s3", 14), snap("a/er/c@s3", 14),
                    snap("a/er/new@s3", 14))
    dst = group_dst(snap("c/er@s2", 6, guid("a/er@s2")), fs("c/er/new", "c/er/new"),
                    snap("c/er/new@s2", 6, guid("a/er/new@s2")))
    o = opts()
    p = rep.plan_replication(src, dst, o, o.source, o.target, "s3", False, fs("c"),
                             resumed=["c/er/new"])
    assert p.refused == {}
    assert [s.send for s in p.streams] == [
        ["zfs", "send", "-w", "-I", "a/er/c@s1", "a/er/c@s2"],
        ["zfs", "send", "-w", "-R", "-I", "@s2", "a/er@s3"]]
