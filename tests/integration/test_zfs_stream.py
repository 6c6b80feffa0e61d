"""zfs_stream against real ZFS 2.1.11: packages of raw streams on a plain directory (a carrier
filesystem that needs no ZFS), signed and age-encrypted, received at the other site.

Every round trip ends by loading the replica's key and reading every file back (R11).
"""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from helpers import sh
from test_zfs_replicate import change_key, files_of, group, prop, put, read_back, snapshots
from zfs_scenarios import destroy_pool, make_pool

from ansible_collections.blindvault.storage.plugins.module_utils.keys import signing


def _pair(keydir, name):
    priv, pub = os.path.join(keydir, name + ".pem"), os.path.join(keydir, name + ".pub.pem")
    sh("openssl", "genpkey", "-algorithm", "ed25519", "-out", priv)
    sh("openssl", "pkey", "-in", priv, "-pubout", "-out", pub)
    return priv, pub


@pytest.fixture(scope="module")
def world():
    root = tempfile.mkdtemp(prefix="bvstr-", dir="/tmp")
    keydir, carrier = os.path.join(root, "keys"), os.path.join(root, "carrier")
    os.makedirs(keydir)
    os.makedirs(carrier)
    a, b = make_pool(root, "bvsa", "256M"), make_pool(root, "bvsb", "256M")
    w = {"root": root, "keydir": keydir, "carrier": carrier, "a": a, "b": b}
    try:
        sh("zfs", "create", b + "/site-a")
        ident = os.path.join(keydir, "site-b.age")
        out = subprocess.run(["age-keygen", "-o", ident], capture_output=True, text=True, check=True)
        w["ident"], w["rcpt"] = ident, [x for x in out.stderr.split() if x.startswith("age1")][0]
        w["priv"], w["pub"] = _pair(keydir, "site-a")
        w["stranger"], _pub = _pair(keydir, "site-c")
        yield w
    finally:
        destroy_pool(a)
        destroy_pool(b)
        shutil.rmtree(root, ignore_errors=True)


def export(module, w, dataset, check=False, **kw):
    return module("zfs_stream", dict(state="exported", dataset=dataset, target_id="site-b",
                                     directory=w["carrier"], recipients=[w["rcpt"]],
                                     signing_key=w["priv"], **kw), check=check)


def import_(module, w, dataset, check=False, **kw):
    args = dict(state="imported", dataset=dataset, target=replica(w, dataset), directory=w["carrier"],
                trusted_signers=[w["pub"]], identity_file=w["ident"])
    args.update(kw)
    return module("zfs_stream", args, check=check)


def exists(ds):
    return sh("zfs", "list", "-H", "-o", "name", ds, check=False).returncode == 0


def replica(w, dataset):
    return "%s/site-a/%s" % (w["b"], dataset.rsplit("/", 1)[1])


def test_full_then_a_key_change_travel_as_files_and_decrypt_at_the_other_site(module, world):
    w = world
    src, k1 = group(w, "vault", "passphrase")
    dst = replica(w, src)

    planned = export(module, w, src, check=True)
    assert planned["changed"] and [s["kind"] for s in planned["streams"]] == ["full"], planned
    assert os.listdir(w["carrier"]) == []
    first = export(module, w, src)
    assert not first.failed, first.get("msg")
    assert first["snapshot_taken"] and os.path.isdir(first["package"])
    assert not export(module, w, src)["changed"]  # site-b is recorded as up to date

    assert import_(module, w, src, check=True)["changed"] and not exists(dst)
    got = import_(module, w, src)
    assert not got.failed, got.get("msg")
    assert got["changed"] and got["hazards"] == [] and len(got["packages"]) == 1
    assert prop(dst, "readonly") == "on" and prop(dst, "blindvault:replica-of") == src
    assert read_back(dst, k1) == files_of(src)
    again = import_(module, w, src)
    assert not again["changed"] and again["skipped"] == [os.path.basename(first["package"])]

    # the incident's key change, then only the child named: the whole group travels, root first
    k2 = change_key(w, src, "vault.k2", "hex")
    put(src + "/child", "after-change.bin")
    second = export(module, w, src + "/child")
    assert not second.failed, second.get("msg")
    assert "R1" in str(second["warnings"]) and second["streams"][0]["datasets"][0] == src
    got = import_(module, w, src)
    assert not got.failed, got.get("msg")
    assert got["hazards"] == [] and [p["package"] for p in got["packages"]] == [os.path.basename(second["package"])]
    assert read_back(dst, k2) == files_of(src)
    assert sh("zfs", "load-key", "-n", "-L", "file://" + k1, dst, check=False).returncode != 0


def test_a_module_package_decrypts_with_the_age_cli(module, world):
    w = world
    src, key = group(w, "interop", "hex", children=())
    res = export(module, w, src)
    path = os.path.join(res["package"], res["streams"][0]["file"])
    dst = "%s/cli-interop" % w["b"]
    proc = subprocess.run("age -d -i %s %s | zfs recv -u %s" % (w["ident"], path, dst), shell=True,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert read_back(dst, key) == files_of(src)


def test_damage_a_foreign_signer_and_a_missing_package_are_refused_before_receiving(module, world):
    w = world
    src, key = group(w, "tamper", "hex")
    dst = replica(w, src)
    packages = [export(module, w, src)["package"]]
    for n in (2, 3):
        put(src, "more-%d.bin" % n)
        packages.append(export(module, w, src, snapshot="trip-%d" % n)["package"])
    assert all(packages) and len(set(packages)) == 3

    victim = os.path.join(packages[1], sorted(f for f in os.listdir(packages[1]) if f.endswith(".age"))[0])
    good = open(victim, "rb").read()
    with open(victim, "wb") as f:
        f.write(good[:-100] + bytes([good[-100] ^ 1]) + good[-99:])
    res = import_(module, w, src)
    assert res.failed and "does not match its signed sha256" in res["msg"], res
    assert not exists(dst)  # not even the intact first package was received
    with open(victim, "wb") as f:
        f.write(good)

    manifest = os.path.join(packages[2], "manifest.json")
    genuine = open(manifest).read()
    env = json.loads(genuine)
    forged = signing.sign(env["manifest"], signing.load_private_key(open(w["stranger"], "rb").read()))
    with open(manifest, "w") as f:
        json.dump(forged, f)
    res = import_(module, w, src)
    assert res.failed and "not signed by a trusted signer" in res["msg"] and not exists(dst)
    with open(manifest, "w") as f:
        f.write(genuine)

    aside = os.path.join(w["root"], "aside")  # out of the carrier: the middle package is lost
    os.rename(packages[1], aside)
    res = import_(module, w, src)
    assert res.failed and os.path.basename(packages[2]) in res["msg"] and "missing" in res["msg"], res
    assert not exists(dst)
    os.rename(aside, packages[1])

    got = import_(module, w, src)
    assert not got.failed, got.get("msg")
    assert len(got["packages"]) == 3 and got["hazards"] == []
    assert dst + "@trip-3" in snapshots(dst)
    assert read_back(dst, key) == files_of(src)


def test_unsigned_age_streams_of_a_whole_group_import_full_then_incremental(module, world):
    """`zfs send -w -R | age -r` made by hand (no manifest): imported only with allow_unsigned,
    planned from the stream's own BEGIN records; a stream of a member or of the root alone is
    refused, a damaged file too, each before anything is received."""
    w = world
    src, key = group(w, "byhand", "passphrase")
    dst = replica(w, src)
    hand = os.path.join(w["root"], "by-hand")
    os.makedirs(hand)

    def age_send(args, fname):
        proc = subprocess.run("zfs send %s | age -r %s > %s" % (args, w["rcpt"], os.path.join(hand, fname)),
                              shell=True, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr

    def unsigned(check=False):
        return module("zfs_stream", dict(state="imported", dataset=src, target=dst, directory=hand,
                                         identity_file=w["ident"], allow_unsigned=True), check=check)

    sh("zfs", "snapshot", "-r", src + "@h1")
    age_send("-w -R %s@h1" % src, "h1.zfs.age")
    refused = module("zfs_stream", dict(state="imported", dataset=src, target=dst, directory=hand,
                                        identity_file=w["ident"]))
    assert refused.failed and "allow_unsigned" in refused["msg"] and not exists(dst)

    planned = unsigned(check=True)
    assert not planned.failed, planned.get("msg")
    assert planned["changed"] and planned["packages"][0]["signed"] is False and not exists(dst)
    got = unsigned()
    assert not got.failed, got.get("msg")
    assert got["changed"] and got["hazards"] == [] and "unsigned" in str(got.get("warnings"))
    assert prop(dst, "blindvault:replica-of") == src and prop(dst + "/child", "encryptionroot") == dst
    assert read_back(dst, key) == files_of(src)
    assert not unsigned()["changed"]

    # parts of the group are refused, whatever their order in the directory
    put(src + "/child", "h2.bin")
    sh("zfs", "snapshot", "-r", src + "@h2")
    age_send("-w -i @h1 %s/child@h2" % src, "a-child-only.age")
    res = unsigned()
    assert res.failed and "inside group" in res["msg"] and "R1" in res["msg"], res
    os.unlink(os.path.join(hand, "a-child-only.age"))
    age_send("-w -i @h1 %s@h2" % src, "b-root-alone.age")
    res = unsigned()
    assert res.failed and "not zfs send -R" in res["msg"], res
    os.unlink(os.path.join(hand, "b-root-alone.age"))
    assert dst + "@h2" not in snapshots(dst)

    age_send("-w -R -I @h1 %s@h2" % src, "h2.zfs.age")
    path = os.path.join(hand, "h2.zfs.age")
    good = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(good[:-50] + bytes([good[-50] ^ 1]) + good[-49:])
    res = unsigned()
    assert res.failed and "damaged" in res["msg"] and dst + "@h2" not in snapshots(dst), res
    with open(path, "wb") as f:
        f.write(good)
    got = unsigned()
    assert not got.failed, got.get("msg")
    assert [p["package"] for p in got["packages"]] == ["h2.zfs.age"] and got["skipped"] == ["h1.zfs.age"]
    assert got["packages"][0]["streams"][0]["kind"] == "group" and got["hazards"] == []
    assert read_back(dst, key) == files_of(src)
