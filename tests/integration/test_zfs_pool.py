"""zfs_pool against ZFS 2.1.11: import before create, never over a ZFS label."""

import os

import pytest

from helpers import sh


@pytest.fixture
def disks(tmp_path):
    """Two 128 MiB files as devices, and a directory to search for them."""
    d = tmp_path / "disks"
    d.mkdir()
    files = []
    for i in range(2):
        f = d / ("d%d.img" % i)
        with open(f, "wb") as fh:
            fh.truncate(128 << 20)
        files.append(str(f))
    yield {"dir": str(d), "files": files, "alt": str(tmp_path / "alt")}
    for name in ("bvcarrier", "bvsig"):
        sh("zpool", "destroy", "-f", name, check=False)


def pool_args(disks, **kw):
    args = {"name": "bvcarrier", "vdevs": [{"type": "mirror", "devices": disks["files"]}],
            "properties": {"cachefile": "none"}, "filesystem_properties": {"compression": "lz4"},
            "altroot": disks["alt"], "search_dirs": [disks["dir"]]}
    args.update(kw)
    return args


def imported():
    return sh("zpool", "list", "-Hp", "-o", "name").stdout.split()


def test_create_import_export_cycle(module, disks):
    args = pool_args(disks)
    plan = module("zfs_pool", args, check=True)
    assert plan["changed"] and [a["action"] for a in plan["actions"]] == ["create"]
    assert "bvcarrier" not in imported()

    r = module("zfs_pool", args)
    assert not r.failed, r
    assert r["state"] == "ONLINE" and r["errata"] == []
    assert sh("zfs", "get", "-Hp", "-o", "value", "compression", "bvcarrier").stdout.strip() == "lz4"
    assert not module("zfs_pool", args)["changed"]
    with open(os.path.join(disks["alt"], "bvcarrier", "precious"), "w") as f:
        f.write("site A data")

    gone = module("zfs_pool", {"name": "bvcarrier", "state": "exported"}, diff=True)
    assert gone["changed"] and "bvcarrier" not in imported()
    assert gone["diff"] == {"before": {"state": "imported"}, "after": {"state": "exported"}}
    assert not module("zfs_pool", {"name": "bvcarrier", "state": "exported"})["changed"]

    # The carrier comes back: present imports it (it does not create a new, empty pool).
    back = module("zfs_pool", args)
    assert [a["action"] for a in back["actions"]] == ["import"] and "bvcarrier" in imported()
    with open(os.path.join(disks["alt"], "bvcarrier", "precious")) as f:
        assert f.read() == "site A data"


def test_a_missed_carrier_is_never_recreated_whatever_force_says(module, disks):
    module("zfs_pool", pool_args(disks))
    module("zfs_pool", {"name": "bvcarrier", "state": "exported"})
    elsewhere = str(disks["alt"]) + "-empty"
    os.makedirs(elsewhere)
    for force in (False, True):
        r = module("zfs_pool", pool_args(disks, search_dirs=[elsewhere], force=force))
        assert r.failed and "carry ZFS pool(s) bvcarrier" in r["msg"], r
        assert "force does not override" in r["msg"]
    # Still importable, intact.
    assert "bvcarrier" in sh("zpool", "import", "-d", disks["dir"]).stdout


def test_imported_never_creates(module, disks):
    r = module("zfs_pool", pool_args(disks, state="imported"))
    assert r.failed and "never creates" in r["msg"] and "bvcarrier" not in imported()


def test_other_signatures_need_force(module, disks):
    sh("mkfs.ext4", "-q", "-F", disks["files"][0])
    args = pool_args(disks, name="bvsig")
    r = module("zfs_pool", args)
    assert r.failed and "holding data" in r["msg"] and "ext4" in r["msg"]
    r = module("zfs_pool", dict(args, force=True))
    assert r["changed"] and "bvsig" in imported()
    destroyed = module("zfs_pool", {"name": "bvsig", "state": "absent"})
    assert destroyed["changed"] and "bvsig" not in imported()


@pytest.mark.parametrize("args,message", [
    ({"name": "bad/name"}, "not a pool name"),
    ({"name": "bvx", "vdevs": [{"type": "mirror", "devices": ["/tmp/one"]}]}, "at least 2"),
    ({"name": "bvx", "vdevs": [{"devices": ["relative.img"]}]}, "absolute path"),
    ({"name": "bvx", "vdevs": [{"devices": ["/nonexistent.img"]}]}, "do not exist"),
    ({"name": "bvx"}, "no vdevs"),
    ({"name": "bvx", "search_dirs": ["/nonexistent-dir"]}, "search_dirs"),
])
def test_bad_input(module, args, message):
    r = module("zfs_pool", args)
    assert r.failed and message in r["msg"], r
