"""Tree parsing and key-less hazards against `zfs list` output recorded from ZFS 2.1.11
(tests/integration/zfs_scenarios.py built the damage with bare commands in the lab)."""

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.zfs import hazards as hz
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.info import report
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import (
    Dataset,
    Tree,
    parse_holds,
    parse_list,
)


@pytest.fixture
def trees(fixture_text):
    cols = fixture_text("zfs-list.columns").strip().split(",")
    holds = parse_holds(fixture_text("zfs-holds.tsv"))
    src = Tree(tuple(parse_list(fixture_text("zfs-list-src.tsv"), cols)), holds)
    dst = Tree(tuple(parse_list(fixture_text("zfs-list-dst.tsv"), cols)))
    return src, dst


def test_parse_types_and_values(trees):
    src, dst = trees
    child = dst.get("bvrecdst/pp-pp/child")
    assert child.type == "filesystem" and child.encrypted and not child.is_encryption_root
    assert child.encryptionroot == "bvrecdst/pp-pp"
    assert isinstance(child["guid"], int) and isinstance(child["pbkdf2salt"], int)
    assert child["blindvault:key-id"] is None  # "-" means unset
    assert dst.get("bvrecdst")["encryption"] == "off" and not dst.get("bvrecdst").encrypted
    assert [b.name for b in src.bookmarks] == ["bvrecsrc/healthy#s2"]
    assert src.bookmarks[0].dataset == "bvrecsrc/healthy"
    snaps = dst.snapshots_of("bvrecdst/healthy/child")
    assert [s.name.split("@")[1] for s in snaps] == ["s1", "s2"]


def test_holds(trees):
    src = trees[0]
    assert src.holds == {"bvrecsrc/healthy@s2": ["blindvault:bvrecdst/healthy"]}
    assert src.get("bvrecsrc/healthy@s2")["userrefs"] == 1


def test_encryption_roots_list_members_root_first(trees):
    dst = trees[1]
    roots = dst.encryption_roots()
    assert roots["bvrecdst/healthy"] == ["bvrecdst/healthy", "bvrecdst/healthy/child"]
    assert set(roots) == {"bvrecdst/" + c for c in ("pp-hex", "hex-pp", "pp-pp", "hex-hex", "healthy")}


def test_recorded_damage_is_found_without_keys(trees):
    dst = trees[1]
    found = {(h["dataset"], h["reason"]) for h in hz.tree_hazards(dst)}
    assert found == {("bvrecdst/pp-hex/child", "keyformat"), ("bvrecdst/hex-pp/child", "keyformat"),
                     ("bvrecdst/pp-pp/child", "pbkdf2")}


def test_source_and_blind_spot_show_nothing(trees):
    src, dst = trees
    assert hz.tree_hazards(src) == []
    assert not [h for h in hz.tree_hazards(dst) if "hex-hex" in h["dataset"]]


def test_compare_recorded_trees_keeps_structure(trees):
    src, dst = trees
    assert hz.compare_hazards(src, "bvrecsrc/healthy", dst, "bvrecdst/healthy") == []


def _ds(name, root, keyformat="hex", key_id=None):
    return Dataset(name, "filesystem", {"encryption": "aes-256-gcm", "encryptionroot": root,
                                        "keyformat": keyformat, "pbkdf2salt": 0, "pbkdf2iters": 0,
                                        "blindvault:key-id": key_id})


def test_key_id_mismatch_inside_a_replica():
    tree = Tree((_ds("t/er", "t/er", key_id="k2"), _ds("t/er/c", "t/er", key_id="k1"),
                 _ds("t/er/d", "t/er", key_id="k2")))
    assert [(h["dataset"], h["reason"]) for h in hz.tree_hazards(tree)] == [("t/er/c", "key-id")]


def test_compare_finds_structure_and_stale_key_id():
    src = Tree((_ds("s/er", "s/er", key_id="k2"), _ds("s/er/c", "s/er", key_id="k2")))
    dst = Tree((_ds("d/er", "d/er", key_id="k1"), _ds("d/er/c", "d/er/c", key_id="k1")))
    found = {(h["dataset"], h["reason"]) for h in hz.compare_hazards(src, "s/er", dst, "d/er")}
    assert found == {("d/er", "key-id"), ("d/er/c", "structure")}


def test_report_shape(trees):
    src = trees[0]
    r = report(src, "bvrecsrc")
    assert r["exists"] and r["hazards"] == []
    snap = [s for s in r["snapshots"] if s["name"] == "bvrecsrc/healthy@s2"][0]
    assert snap["holds"] == ["blindvault:bvrecdst/healthy"] and snap["dataset"] == "bvrecsrc/healthy"
    er = [e for e in r["encryption_roots"] if e["name"] == "bvrecsrc/healthy"][0]
    assert er["keyformat"] == "hex" and er["members"][0] == "bvrecsrc/healthy"


def test_parse_rejects_a_column_mismatch():
    with pytest.raises(ValueError, match="fields"):
        parse_list("a\tb\n", ["name", "type", "guid"])
