"""zfs_dataset's planner on synthetic trees (no processes)."""

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import (
    DatasetSpec,
    create_argv,
    normalize,
    plan_dataset,
    zfs_size,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import Dataset, Tree


def ds(name, kind="filesystem", **props):
    base = {"encryption": "off", "encryptionroot": None, "keyformat": "none",
            "compression": "off", "atime": "on", "quota": 0, "volsize": None}
    base.update(props)
    return Dataset(name, kind, base)


def tree(*entries, holds=None):
    return Tree(tuple(entries), holds or {})


@pytest.mark.parametrize("value,expected", [("1G", 1 << 30), ("512K", 512 << 10), ("none", 0),
                                            ("1.5M", 3 << 19), (4096, 4096), ("10GiB", 10 << 30)])
def test_zfs_size(value, expected):
    assert zfs_size(value) == expected


def test_normalize():
    assert normalize("atime", False) == "off" and normalize("quota", "1G") == str(1 << 30)
    assert normalize("compression", "lz4") == "lz4"


def test_create_encryption_root_key_on_stdin_never_in_argv():
    spec = DatasetSpec("p/er", encryption="on", keyformat="hex", key="ab" * 32,
                       properties={"compression": "lz4"})
    argv = create_argv(spec)
    assert "ab" * 32 not in " ".join(argv)
    assert argv[-1] == "p/er" and "keylocation=prompt" in argv and "keyformat=hex" in argv


def test_create_with_key_file_sets_its_location():
    argv = create_argv(DatasetSpec("p/er", encryption="aes-256-gcm", keyformat="passphrase",
                                   key_file="/k/pass", pbkdf2iters=100000))
    assert "keylocation=file:///k/pass" in argv and "pbkdf2iters=100000" in argv


def test_plan_create_needs_parent():
    with pytest.raises(Refusal, match="parent p/a does not exist"):
        plan_dataset(DatasetSpec("p/a/b"), tree(ds("p")), set())
    created = {"p/a"}
    assert plan_dataset(DatasetSpec("p/a/b"), tree(ds("p")), created).plan.steps[0].action == "create"


def test_plan_sets_only_what_differs():
    dp = plan_dataset(DatasetSpec("p/a", properties={"compression": "lz4", "atime": True}),
                      tree(ds("p"), ds("p/a")), set())
    assert dp.set == {"compression": "lz4"}


def test_plan_reports_create_only_differences():
    cur = ds("p/er", encryption="aes-256-gcm", encryptionroot="p/er", keyformat="passphrase")
    with pytest.raises(Refusal, match="keyformat is passphrase, declared hex"):
        plan_dataset(DatasetSpec("p/er", encryption="on", keyformat="hex", key="ab" * 32),
                     tree(ds("p"), cur), set())
    # 'on' matches whatever suite ZFS chose.
    assert not plan_dataset(DatasetSpec("p/er", encryption="on", keyformat="passphrase"),
                            tree(ds("p"), cur), set()).plan.steps


def test_plan_refuses_inherited_where_a_root_is_declared():
    child = ds("p/er/c", encryption="aes-256-gcm", encryptionroot="p/er", keyformat="hex")
    with pytest.raises(Refusal, match="inherits encryption"):
        plan_dataset(DatasetSpec("p/er/c", encryption="on", keyformat="hex"),
                     tree(ds("p"), child), set())


def test_plan_absent_guards():
    t = tree(ds("p"), ds("p/a"), ds("p/a/b"), Dataset("p/a/b@s", "snapshot", {"createtxg": 1}),
             holds={"p/a/b@s": ["keep", "blindvault:carrier/a/b"]})
    with pytest.raises(Refusal, match="recursive: true"):
        plan_dataset(DatasetSpec("p/a", state="absent"), t, set())
    with pytest.raises(Refusal, match="replication holds"):
        plan_dataset(DatasetSpec("p/a", state="absent", recursive=True), t, set())
    dp = plan_dataset(DatasetSpec("p/a", state="absent", recursive=True, force=True), t, set())
    assert [(s.action, s.argv) for s in dp.plan.steps] == [
        ("release", ["zfs", "release", "blindvault:carrier/a/b", "p/a/b@s"]),
        ("destroy", ["zfs", "destroy", "-r", "p/a"])]


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="p/x", encryption="aes-256-gcm"), "needs keyformat"),
    (dict(name="p/x", keyformat="hex"), "set encryption"),
    (dict(name="p/x", encryption="on", keyformat="raw", key="x" * 32), "key_file"),
    (dict(name="p/x", encryption="on", keyformat="hex", pbkdf2iters=100000), "passphrase"),
    (dict(name="p/x", encryption="on", keyformat="passphrase", pbkdf2iters=10), "100000"),
    (dict(name="p/x", encryption="rot13"), "encryption must be one of"),
    (dict(name="p/x", volsize="1G"), "only applies to type volume"),
    (dict(name="p/x", properties={"keylocation": "prompt"}), "keylocation option"),
    (dict(name="p/x", key="a" * 64, key_file="/k", encryption="on", keyformat="hex"), "not both"),
])
def test_spec_validation(kwargs, message):
    with pytest.raises(Refusal, match=message):
        DatasetSpec(**kwargs)


def test_yaml_booleans_for_encryption():
    assert DatasetSpec("p/x", encryption="True", keyformat="hex", key="a" * 64).encryption == "on"
    assert DatasetSpec("p/x", encryption="False").encryption == "off"


@pytest.mark.parametrize("name,ok", [
    ("tank", True), ("tank/a.b/c_d:e-f", True), ("-r", False), ("1tank/a", False), ("tank/..", False), ("tank/./x", False),
    ("tank/a b", False), ("/tank", False), ("tank/", False), ("tank//a", False), ("tank/a@s", False),
    ("tank/a#b", False), ("tank/%recv", False), ("tank/" + "x" * 251, False), ("", False),
])
def test_dataset_names_take_zfs_characters_without_spaces_or_dot_parts(name, ok):
    from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import valid_name
    assert valid_name(name) is ok


@pytest.mark.parametrize("name", ["tank/a@", "tank/a@b c", "tank/a@..", "tank/a@b/c", "tank/a@b#c",
                                  "tank/a@b@c", "tank/..@s", "tank/a"])
def test_bad_snapshot_names_are_refused(name):
    from ansible_collections.blindvault.storage.plugins.module_utils.zfs.snapshot import split_snapshot
    with pytest.raises(Refusal, match="not a snapshot name"):
        split_snapshot(name)
