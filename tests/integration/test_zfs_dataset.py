"""zfs_dataset against ZFS 2.1.11: encryption roots, list form, idempotence, refusals."""

import secrets

import pytest

from helpers import sh


def zget(ds, *props):
    out = sh("zfs", "get", "-Hp", "-o", "value", ",".join(props), ds).stdout.split("\n")
    return out[:len(props)] if len(props) > 1 else out[0]


def exists(ds):
    return sh("zfs", "list", ds, check=False).returncode == 0


def test_encryption_root_with_stdin_key_and_children(module, zpool, exec_log):
    top = zpool["name"] + "/enc"
    key = secrets.token_hex(32)
    args = {"datasets": [
        {"name": top + "/vault/mail", "properties": {"quota": "64M"}},  # child first on purpose
        {"name": top},
        {"name": top + "/vault", "encryption": "on", "keyformat": "hex", "key": key,
         "properties": {"compression": "lz4", "blindvault:key-id": "k1"}},
        {"name": top + "/vault/photos"},
    ]}
    plan = module("zfs_dataset", args, check=True, diff=True)
    assert plan["changed"] and not exists(top)
    assert [d["created"] for d in plan["datasets"]] == [True] * 4

    r = module("zfs_dataset", args)
    assert not r.failed, r
    assert zget(top + "/vault", "encryption", "keyformat", "encryptionroot", "keylocation") == \
        ["aes-256-gcm", "hex", top + "/vault", "prompt"]
    assert zget(top + "/vault/photos", "encryptionroot") == top + "/vault"
    assert zget(top + "/vault/mail", "quota") == str(64 << 20)
    assert r["datasets"][2]["encryption"] == "aes-256-gcm"  # 'on' resolved
    # The key went on stdin: no process ever saw it in argv.
    assert exec_log() and not [line for line in exec_log() if key in line]
    assert key not in str(r)

    again = module("zfs_dataset", args)
    assert not again["changed"], again["actions"]
    sh("zfs", "unload-key", "-r", top + "/vault", check=False)


def test_passphrase_root_from_key_file(module, zpool, tmp_path):
    ds = zpool["name"] + "/pp"
    kf = tmp_path / "pass"
    kf.write_text("correct horse battery\n")
    kf.chmod(0o600)
    args = {"name": ds, "encryption": "aes-256-gcm", "keyformat": "passphrase",
            "key_file": str(kf), "pbkdf2iters": 100000}
    r = module("zfs_dataset", args)
    assert r["changed"] and zget(ds, "keyformat", "pbkdf2iters", "keylocation") == \
        ["passphrase", "100000", "file://" + str(kf)]
    assert not module("zfs_dataset", args)["changed"]
    # A fixed-at-creation difference is reported, never "fixed" by recreating.
    wrong = module("zfs_dataset", dict(args, keyformat="hex", pbkdf2iters=None))
    assert wrong.failed and "fixed at creation" in wrong["msg"] and "zfs_key" in wrong["msg"]
    wrong = module("zfs_dataset", dict(args, pbkdf2iters=200000))
    assert wrong.failed and "pbkdf2iters is 100000" in wrong["msg"]
    assert zget(ds, "keyformat") == "passphrase"


def test_property_changes_grouped_into_one_zfs_set(module, zpool, exec_log):
    top = zpool["name"] + "/grp"
    names = [top] + ["%s/d%02d" % (top, i) for i in range(8)]
    module("zfs_dataset", {"datasets": [{"name": n} for n in names]})
    before = len(exec_log("zfs"))
    r = module("zfs_dataset", {"properties": {"atime": False, "quota": "1G"},
                               "datasets": [{"name": n} for n in names[1:]]}, diff=True)
    cmds = exec_log("zfs")[before:]
    sets = [c for c in cmds if c.startswith("zfs set")]
    assert r["changed"] and len(sets) == 1 and sets[0].count(top + "/d") == 8, cmds
    assert zget(names[3], "atime", "quota") == ["off", str(1 << 30)]
    assert r["diff"][0]["before"]["atime"] == "on" and r["diff"][0]["after"]["atime"] == "off"


def test_noop_cost_is_constant_in_the_number_of_datasets(module, zpool, exec_log):
    counts = {}
    for n in (2, 16):
        top = "%s/many%d" % (zpool["name"], n)
        items = [{"name": top}] + [{"name": "%s/c%02d" % (top, i)} for i in range(n - 1)]
        module("zfs_dataset", {"datasets": items})
        before = len(exec_log("zfs"))
        again = module("zfs_dataset", {"datasets": items})
        assert not again["changed"]
        counts[n] = len(exec_log("zfs")) - before
    assert counts[2] == counts[16] == 1, counts


def test_volume_grow_and_shrink_refused(module, zpool):
    vol = zpool["name"] + "/vol"
    r = module("zfs_dataset", {"name": vol, "type": "volume", "volsize": "16M"})
    assert r["changed"] and zget(vol, "volsize") == str(16 << 20)
    grow = module("zfs_dataset", {"name": vol, "type": "volume", "volsize": "32M"})
    assert grow["changed"] and zget(vol, "volsize") == str(32 << 20)
    shrink = module("zfs_dataset", {"name": vol, "type": "volume", "volsize": "16M"})
    assert shrink.failed and "shrinking" in shrink["msg"] and zget(vol, "volsize") == str(32 << 20)


def test_absent_needs_recursive_and_respects_replication_holds(module, zpool):
    top = zpool["name"] + "/gone"
    module("zfs_dataset", {"datasets": [{"name": top}, {"name": top + "/c"}]})
    sh("zfs", "snapshot", "-r", top + "@s1")
    sh("zfs", "hold", "blindvault:carrier/gone", top + "/c@s1")

    r = module("zfs_dataset", {"name": top, "state": "absent"})
    assert r.failed and "recursive: true" in r["msg"] and exists(top)
    r = module("zfs_dataset", {"name": top, "state": "absent", "recursive": True})
    assert r.failed and "replication holds" in r["msg"] and exists(top + "/c@s1")
    plan = module("zfs_dataset", {"name": top, "state": "absent", "recursive": True,
                                  "force": True}, check=True)
    assert [a["action"] for a in plan["actions"]] == ["release", "destroy"] and exists(top)
    r = module("zfs_dataset", {"name": top, "state": "absent", "recursive": True, "force": True})
    assert r["changed"] and not exists(top)
    assert not module("zfs_dataset", {"name": top, "state": "absent"})["changed"]


@pytest.mark.parametrize("args,message", [
    ({"name": "bvds/orphan/child"}, "parent bvds/orphan does not exist"),
    ({"name": "nopool/x"}, "not imported"),
    ({"name": "bvds/x@snap"}, "not a dataset name"),
    ({"name": "bvds/x", "encryption": "aes-256-gcm"}, "needs keyformat"),
    ({"name": "bvds/x", "keyformat": "hex", "key": "ab" * 32}, "set encryption"),
    ({"name": "bvds/x", "encryption": "on", "keyformat": "hex", "key": "nothex"}, "64 hexadecimal"),
    ({"name": "bvds/x", "encryption": "on", "keyformat": "passphrase", "key": "short"}, "8 to 512"),
    ({"name": "bvds/x", "properties": {"encryption": "on"}}, "with the encryption option"),
    ({"name": "bvds/x", "type": "volume"}, "needs volsize"),
    ({"name": "bvds/x", "properties": {"quota": "lots"}}, "not a ZFS size"),
    ({"datasets": [{"name": "bvds/x"}, {"name": "bvds/x"}]}, "more than once"),
    ({"datasets": [{"state": "present"}]}, "datasets[0]: missing required arguments: name"),
    ({"name": "bvds", "state": "absent"}, "zfs_pool"),
])
def test_bad_input_fails_clearly_and_changes_nothing(module, zpool, args, message):
    before = sh("zfs", "list", "-Hp", "-t", "all", "-o", "name", "-r", "bvds").stdout
    r = module("zfs_dataset", args)
    assert r.failed and message in r["msg"], r
    assert sh("zfs", "list", "-Hp", "-t", "all", "-o", "name", "-r", "bvds").stdout == before


def test_yaml_boolean_on_is_understood(module, zpool):
    ds = zpool["name"] + "/yamlbool"
    r = module("zfs_dataset", {"name": ds, "encryption": True, "keyformat": "hex",
                               "key": secrets.token_hex(32)})
    assert not r.failed, r
    assert zget(ds, "encryption") == "aes-256-gcm"
    assert not module("zfs_dataset", {"name": ds, "encryption": True, "keyformat": "hex"})["changed"]
    sh("zfs", "unload-key", ds, check=False)


def test_escrowed_key_recovers_an_encrypted_dataset(module, zpool, tmp_path):
    """encryption_key -> zfs_dataset with key_file -> lose the key -> age -d the escrow ->
    the dataset loads and reads back byte-equal."""
    ident = tmp_path / "admin.identity"
    out = sh("age-keygen", "-o", str(ident))
    recipient = [w for w in out.stderr.split() if w.startswith("age1")][0]
    key = tmp_path / "vault.hex"
    k = module("encryption_key", {"path": str(key), "escrow_recipients": [recipient]})
    assert k["generated"]
    ds = zpool["name"] + "/escrowed"
    r = module("zfs_dataset", {"name": ds, "encryption": "aes-256-gcm", "keyformat": "hex",
                               "key_file": str(key)})
    assert r["changed"], r
    mnt = zget(ds, "mountpoint")
    payload = secrets.token_bytes(100000)
    with open(mnt + "/data", "wb") as f:
        f.write(payload)
    sh("zfs", "unmount", ds)
    sh("zfs", "unload-key", ds)
    key.unlink()  # the key is lost...
    recovered = tmp_path / "recovered.hex"
    sh("age", "-d", "-i", str(ident), "-o", str(recovered), k["escrow_path"])
    sh("zfs", "load-key", "-L", "file://" + str(recovered), ds)  # ...and recovered
    sh("zfs", "mount", ds)
    with open(mnt + "/data", "rb") as f:
        assert f.read() == payload
