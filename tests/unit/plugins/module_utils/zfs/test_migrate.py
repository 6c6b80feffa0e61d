"""zfs_migrate's decisions on hand-built trees (tests/integration/test_zfs_migrate.py runs the
whole migration against real ZFS)."""

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import migrate
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import Dataset, Tree


def fs(name, enc_root=None, **props):
    base = {"encryption": "aes-256-gcm" if enc_root else "off", "encryptionroot": enc_root,
            "mountpoint": "/" + name, "mounted": "yes", "canmount": "on"}
    base.update(props)
    return Dataset(name, "filesystem", base)


def opts(tmp_path, *datasets, root="tank/enc", **kw):
    key = tmp_path / "k.hex"
    key.write_text("00" * 32)
    return migrate.MigrateOptions(list(datasets), root, str(key), **kw)


ROOT = fs("tank/enc", "tank/enc", keystatus="unavailable")


def test_each_dataset_gets_copy_update_destroy_or_done_from_what_is_there(tmp_path):
    o = opts(tmp_path, "tank/home", "tank/media", "tank/old", "tank/gone")
    src = Tree((fs("tank/home"), fs("tank/media"), fs("tank/old")))
    dst = Tree((ROOT, fs("tank/enc/media", "tank/enc", **{"blindvault:replica-of": "tank/media"}),
                fs("tank/enc/old", "tank/enc", **{"blindvault:migrated-from": "tank/old"}),
                fs("tank/enc/gone", "tank/enc", **{"blindvault:migrated-from": "tank/gone"})))
    migrate.validate(o)
    items = migrate.plan(src, dst, o)
    assert [(i["source"], i["target"], i["action"]) for i in items] == [
        ("tank/home", "tank/enc/home", "copy"), ("tank/media", "tank/enc/media", "update"),
        ("tank/old", "tank/enc/old", "destroy"), ("tank/gone", "tank/enc/gone", "done")]


@pytest.mark.parametrize("datasets,root,match", [
    ((), "tank/enc", "at least one"),
    (("tank/a", "tank/a/b"), "tank/enc", "inside tank/a"),
    (("tank/x/data", "tank/y/data"), "tank/enc", "same last name"),
    (("tank/enc/a",), "tank/enc", "overlap"),
    (("tank",), "tank/enc", "below a pool"),
    (("tank/a b",), "tank/enc", "not a dataset name"),
])
def test_bad_requests_are_refused_before_anything_is_read(tmp_path, datasets, root, match):
    with pytest.raises(Refusal, match=match):
        migrate.validate(opts(tmp_path, *datasets, root=root))


def test_bad_snapshot_names_and_a_missing_key_file(tmp_path):
    with pytest.raises(Refusal, match="must differ"):
        migrate.validate(opts(tmp_path, "tank/a", snapshot="s", final_snapshot="s"))
    with pytest.raises(Refusal, match="snapshot"):
        migrate.validate(opts(tmp_path, "tank/a", snapshot="a@b"))
    o = opts(tmp_path, "tank/a")
    o.key_file = str(tmp_path / "nope")
    with pytest.raises(Refusal, match="key_file"):
        migrate.validate(o)


@pytest.mark.parametrize("src,dst,match", [
    ((fs("tank/a", "tank/a"),), (ROOT,), "encrypted already"),
    ((fs("tank/a", **{"blindvault:replica-of": "x/a"}),), (ROOT,), "replica of x/a"),
    ((fs("tank/a"),), (ROOT, fs("tank/enc/a", "tank/enc")), "not a copy of tank/a"),
    ((), (ROOT,), "does not exist"),
    ((fs("tank/a"),), (), "does not exist"),
    ((fs("tank/a"),), (fs("tank/enc"),), "not an encryption root"),
])
def test_what_cannot_be_migrated_is_refused(tmp_path, src, dst, match):
    with pytest.raises(Refusal, match=match):
        migrate.plan(Tree(src), Tree(dst), opts(tmp_path, "tank/a"))


def test_the_switch_keeps_the_mountpoints_first_and_marks_last():
    item = {"source": "tank/home", "target": "tank/enc/home", "mountpoint": "/alt/srv/home"}
    tree = Tree((fs("tank/enc/home", "tank/enc", mounted="no"), fs("tank/enc/home/u", "tank/enc", mounted="no"),
                 fs("tank/enc/home/off", "tank/enc", mounted="no", canmount="off"),
                 fs("tank/enc/home/web", "tank/enc", mounted="no"), fs("tank/enc/home/web/x", "tank/enc", mounted="no"),
                 fs("tank/enc/home/old", "tank/enc", mounted="no",
                    **{"blindvault:migrate-mountpoint": "legacy"})))
    migrate.child_mountpoints([item], {"tank/home/web": "/alt/var/www", "tank/home/old": "none"},
                              {"tank/enc/home/old": "legacy"})
    cmds = [" ".join(c) for c in migrate.switch_commands(item, tree, altroot="/alt")]
    assert cmds == [
        "zfs set blindvault:migrate-mountpoint=/srv/home tank/enc/home",
        "zfs set blindvault:migrate-mountpoint=legacy tank/enc/home/old",
        "zfs set blindvault:migrate-mountpoint=/var/www tank/enc/home/web",
        "zfs set mountpoint=none tank/home/web", "zfs set mountpoint=none tank/home/old",
        "zfs set mountpoint=none tank/home",
        "zfs inherit -r readonly tank/enc/home",
        "zfs set mountpoint=/srv/home tank/enc/home",
        "zfs set mountpoint=legacy tank/enc/home/old", "zfs set mountpoint=/var/www tank/enc/home/web",
        "zfs mount tank/enc/home", "zfs mount tank/enc/home/u", "zfs mount tank/enc/home/web",
        "zfs mount tank/enc/home/web/x",
        "zfs set blindvault:migrated-from=tank/home tank/enc/home",
        "zfs inherit -r blindvault:replica-of tank/enc/home"]
    # an interrupted switch: the original already gave its mountpoint up, the copy kept it
    src = Tree((fs("tank/home", mountpoint="none"),))
    dst = Tree((ROOT, fs("tank/enc/home", "tank/enc", **{"blindvault:replica-of": "tank/home",
                                                         "blindvault:migrate-mountpoint": "/srv/home"})))
    assert migrate.plan(src, dst, migrate.MigrateOptions(["tank/home"], "tank/enc", "/k"))[0]["mountpoint"] == "/srv/home"


def test_volumes_or_encrypted_datasets_inside_an_original_are_refused_up_front(tmp_path):
    vol = Dataset("tank/a/vol", "volume", {"encryption": "off"})
    with pytest.raises(Refusal, match="tank/a/vol .* is a volume"):
        migrate.plan(Tree((fs("tank/a"), vol)), Tree((ROOT,)), opts(tmp_path, "tank/a"))
    with pytest.raises(Refusal, match="tank/a/e .* encrypted already"):
        migrate.plan(Tree((fs("tank/a"), fs("tank/a/e", "tank/a/e"))), Tree((ROOT,)), opts(tmp_path, "tank/a"))


class _Runner:
    check_mode = False

    def __init__(self):
        self.ran = []

    def run(self, argv, **_kw):
        self.ran.append(" ".join(argv))


def _snap(name, guid):
    return Dataset(name, "snapshot", {"guid": guid, "createtxg": 1})


@pytest.mark.parametrize("src,match", [
    ((fs("tank/a", written=4096), _snap("tank/a@f1", 7)), "written after tank/a@f1"),
    ((fs("tank/a", written=0), _snap("tank/a@f2", 8)), "not on the copy"),
    ((fs("tank/a", written=0),), "created after the copy"),
    ((fs("tank/a", written=0), _snap("tank/a@f1", 7), fs("tank/a/new", written=0)), "tank/a/new has no snapshot"),
])
def test_an_original_that_changed_after_the_final_snapshot_is_never_destroyed(monkeypatch, src, match):
    copy = Tree((fs("tank/enc/a", "tank/enc"), _snap("tank/enc/a@f1", 7)))
    trees = {"tank/a": Tree(src), "tank/enc/a": copy}
    monkeypatch.setattr(migrate, "read_tree", lambda runner, names, **kw: trees[names[0]])
    runner = _Runner()
    with pytest.raises(Refusal, match=match + ".*nothing was destroyed"):
        migrate._unchanged_since_copy(runner, {"source": "tank/a", "target": "tank/enc/a"})
    assert runner.ran == ["zpool sync tank"]
    trees["tank/a"] = Tree((fs("tank/a", written=0), _snap("tank/a@f1", 7)))
    migrate._unchanged_since_copy(runner, {"source": "tank/a", "target": "tank/enc/a"})  # unchanged: goes on


def test_each_finalize_takes_a_new_final_snapshot_name(tmp_path):
    o = opts(tmp_path, "tank/a")
    migrate.validate(o)
    assert o.final_snapshot == "blindvault-migrate-final-%Y%m%d%H%M%S"
    with pytest.raises(Refusal, match="fixed name"):
        migrate.validate(opts(tmp_path, "tank/a", snapshot="m-%Y"))
