"""Stream packages with stand-in commands for zfs send/recv (the lab proves the real ones):
files sealed with age and a signed manifest; damage, foreign signers and swaps refused."""

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.keys import age, signing
from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError, Runner
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import package

pytestmark = pytest.mark.skipif(not (shutil.which("age-keygen") and shutil.which("openssl")),
                                reason="age-keygen and openssl are needed")


def identity(tmp_path, name):
    path = tmp_path / name
    out = subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, text=True, check=True)
    return path, [w for w in out.stderr.split() if w.startswith("age1")][0]


def ed25519(tmp_path, name):
    priv, pub = tmp_path / (name + ".pem"), tmp_path / (name + ".pub")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(priv)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout", "-out", str(pub)], check=True)
    return signing.load_private_key(priv.read_bytes()), signing.load_public_key(pub.read_bytes())


@pytest.fixture
def world(tmp_path):
    ident, rcpt = identity(tmp_path, "site-b.age")
    key, pub = ed25519(tmp_path, "site-a")
    carrier = tmp_path / "carrier"
    carrier.mkdir()
    data = {"tank/vault": os.urandom(3 * age.CHUNK + 11), "tank/vault/docs": os.urandom(5000)}
    for i, blob in enumerate(data.values()):
        (tmp_path / ("s%d" % i)).write_bytes(blob)
    specs = [package.StreamSpec(["cat", str(tmp_path / ("s%d" % i))], "full", [ds], "bv-1", {ds: str(100 + i)})
             for i, ds in enumerate(data)]
    return dict(tmp=tmp_path, ident=ident, rcpt=rcpt, key=key, pub=pub, carrier=carrier, data=data, specs=specs,
                ids=age.parse_identities(ident.read_text()))


def export(w, name="tank%vault@bv-1", **kw):
    return package.write_package(Runner(), str(w["carrier"]), name, w["specs"], [w["rcpt"]], w["key"],
                                 dict({"group": "tank/vault", "target_id": "site-b"}, **kw))


def received(w, path, entry):
    out = w["tmp"] / ("recv-" + entry["file"])
    package.receive_stream(Runner(), path, entry, w["ids"], ["sh", "-c", 'cat > "$0"', str(out)])
    return out.read_bytes()


def test_a_package_round_trips_and_every_file_opens_with_age(world):
    w = world
    manifest = export(w)
    assert package.list_packages(str(w["carrier"])) == ["tank%vault@bv-1"]
    path = str(w["carrier"] / "tank%vault@bv-1")
    assert package.open_package(path, [w["pub"]]) == manifest
    assert [e["file"] for e in manifest["streams"]] == ["00-tank%vault.zfs.age", "01-tank%vault%docs.zfs.age"]
    for entry, (ds, blob) in zip(manifest["streams"], w["data"].items()):
        assert entry["datasets"] == [ds] and entry["stream_bytes"] == len(blob)
        assert received(w, path, entry) == blob
        cli = subprocess.run(["age", "-d", "-i", str(w["ident"]), os.path.join(path, entry["file"])],
                             capture_output=True, check=True)
        assert cli.stdout == blob
    with pytest.raises(package.PackageError, match="never overwritten"):
        export(w)


def test_damage_foreign_signers_and_stray_files_are_refused_before_receiving(world):
    w = world
    export(w)
    path = w["carrier"] / "tank%vault@bv-1"
    stranger = ed25519(w["tmp"], "site-c")[1]
    with pytest.raises(package.PackageError, match="not signed by a trusted signer"):
        package.open_package(str(path), [stranger])

    victim = path / "01-tank%vault%docs.zfs.age"
    good = victim.read_bytes()
    victim.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(package.PackageError, match="does not match its signed sha256"):
        package.open_package(str(path), [w["pub"]])
    victim.unlink()
    with pytest.raises(package.PackageError, match="is missing"):
        package.open_package(str(path), [w["pub"]])
    victim.write_bytes(good)
    (path / "07-extra.zfs.age").write_bytes(b"x")
    with pytest.raises(package.PackageError, match="does not name: 07-extra"):
        package.open_package(str(path), [w["pub"]])
    (path / "07-extra.zfs.age").unlink()

    env = json.loads((path / "manifest.json").read_text())
    env["manifest"]["streams"][1]["datasets"] = ["tank/elsewhere"]
    (path / "manifest.json").write_text(json.dumps(env))
    with pytest.raises(package.PackageError, match="altered"):
        package.open_package(str(path), [w["pub"]])


def test_a_file_swapped_after_the_check_is_refused_before_a_byte_is_received(world):
    w = world
    manifest = export(w)
    path = str(w["carrier"] / "tank%vault@bv-1")
    package.open_package(path, [w["pub"]])
    entry = manifest["streams"][0]
    # anyone holding the public recipient can write a valid age file: its header is not the signed one
    forged = subprocess.run(["age", "-r", w["rcpt"]], input=os.urandom(3 * age.CHUNK + 11),
                            capture_output=True, check=True).stdout
    genuine = open(os.path.join(path, entry["file"]), "rb").read()
    with open(os.path.join(path, entry["file"]), "wb") as f:
        f.write(forged)
    out = w["tmp"] / "recv"
    with pytest.raises(package.PackageError, match="not the one the manifest signed"):
        package.receive_stream(Runner(), path, entry, w["ids"], ["sh", "-c", 'cat > "$0"', str(out)])
    assert not out.exists()  # refused at the header: zfs recv never started

    # the genuine file cut short after the check: only the sender's bytes arrive, and it fails
    with open(os.path.join(path, entry["file"]), "wb") as f:
        f.write(genuine[:-(11 + 16)])
    with pytest.raises(package.PackageError, match="chunk 2 is damaged, truncated"):
        package.receive_stream(Runner(), path, entry, w["ids"], ["sh", "-c", 'cat > "$0"', str(out)])
    assert out.read_bytes() == w["data"]["tank/vault"][:age.CHUNK]  # a genuine prefix, the rest held back


def test_a_stream_file_that_is_a_symlink_or_a_fifo_is_refused_without_waiting(world):
    w = world
    manifest = export(w)
    path = w["carrier"] / "tank%vault@bv-1"
    victim = path / manifest["streams"][1]["file"]
    victim.unlink()
    victim.symlink_to("/dev/zero")
    with pytest.raises(package.PackageError):
        package.open_package(str(path), [w["pub"]])
    victim.unlink()
    os.mkfifo(victim)
    with pytest.raises(package.PackageError, match="not a regular file"):
        package.open_package(str(path), [w["pub"]])


def test_a_failed_send_leaves_neither_a_package_nor_a_partial_one(world):
    w = world
    w["specs"][1].send = ["sh", "-c", "head -c 1000 /dev/zero; echo 'cannot send' >&2; exit 1"]
    with pytest.raises(CommandError, match="cannot send"):
        export(w)
    assert os.listdir(w["carrier"]) == [] and package.list_packages(str(w["carrier"])) == []


def test_a_torn_package_is_not_listed_and_names_are_checked(world):
    w = world
    (w["carrier"] / ".tank%vault@bv-1.partial-x").mkdir()
    (w["carrier"] / "no-manifest").mkdir()
    assert package.list_packages(str(w["carrier"])) == []
    with pytest.raises(package.PackageError, match="no manifest.json"):
        package.open_package(str(w["carrier"] / "no-manifest"), [w["pub"]])
    with pytest.raises(package.PackageError, match="characters outside"):
        export(w, name="../escape")
