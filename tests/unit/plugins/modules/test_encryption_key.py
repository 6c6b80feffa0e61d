"""encryption_key on the host: it only writes files, so the real module runs here, and the
escrow copy is opened with the real age CLI (Debian's age 1.1.1, installed by lab/install.sh)."""

import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.blindvault.storage.tests.run_module import run_module

needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="age CLI not installed")


@pytest.fixture
def identity(tmp_path):
    """An age identity made by age-keygen; returns (identity file, recipient)."""
    ident = tmp_path / "admin.identity"
    out = subprocess.run(["age-keygen", "-o", str(ident)], capture_output=True, text=True,
                         check=True)
    recipient = [w for w in out.stderr.split() if w.startswith("age1")][0]
    return ident, recipient


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("fmt,check", [
    ("hex", lambda b: len(b) == 64 and int(b, 16) >= 0),
    ("raw", lambda b: len(b) == 32),
    ("passphrase", lambda b: 8 <= len(b) <= 512 and b.decode().isprintable()),
])
def test_generates_each_format_0600_and_is_idempotent(tmp_path, fmt, check):
    path = tmp_path / ("k." + fmt)
    r = run_module("encryption_key", {"path": str(path), "format": fmt})
    assert r["changed"] and r["generated"] and mode(path) == 0o600
    data = path.read_bytes()
    assert check(data) and not data.endswith(b"\n")
    assert data.decode("latin-1") not in str(r)  # the key is never returned
    again = run_module("encryption_key", {"path": str(path), "format": fmt})
    assert not again["changed"] and path.read_bytes() == data


def test_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "k.hex"
    r = run_module("encryption_key", {"path": str(path)}, check=True, diff=True)
    assert r["changed"] and not path.exists()
    assert r["diff"] == {"before": {"exists": False, "escrow_recipients": None},
                         "after": {"exists": True, "escrow_recipients": None},
                         "before_header": str(path), "after_header": str(path)}


def test_check_mode_plans_a_key_whose_directory_an_earlier_task_would_make(tmp_path):
    # a role's `file: state=directory` before this task is only planned in check mode
    path = tmp_path / "keys" / "k.hex"
    r = run_module("encryption_key", {"path": str(path)}, check=True)
    assert not r.failed and r["changed"], r
    assert "directory does not exist yet" in r["actions"][0]["reason"]
    real = run_module("encryption_key", {"path": str(path)})
    assert real.failed and "does not exist" in real["msg"]
    assert not (tmp_path / "keys").exists()


def test_existing_foreign_file_is_kept_unless_forced(tmp_path):
    path = tmp_path / "k.hex"
    path.write_bytes(b"not a key")
    r = run_module("encryption_key", {"path": str(path)})
    assert r.failed and "is kept" in r["msg"] and path.read_bytes() == b"not a key"
    r = run_module("encryption_key", {"path": str(path), "force": True})
    assert r["changed"] and len(path.read_bytes()) == 64


@pytest.mark.parametrize("args,message", [
    ({"path": "/nonexistent-dir/k"}, "does not exist"),
    ({"path": "/tmp", "format": "hex"}, "not a regular file"),
    ({"path": "/tmp/k", "escrow_recipients": ["age1notarecipient"]}, "escrow_recipients"),
    ({"path": "/tmp/k", "escrow_recipients": ["ssh-ed25519 AAAA"]}, "not an age X25519 recipient"),
    ({"path": "/tmp/k", "length": 8}, "length must be"),
])
def test_bad_input(args, message):
    r = run_module("encryption_key", args)
    assert r.failed and message in r["msg"], r
    assert not os.path.exists("/tmp/k")


@needs_age
def test_escrow_opens_with_the_age_cli(tmp_path, identity):
    ident, recipient = identity
    ident2 = tmp_path / "second.identity"
    out = subprocess.run(["age-keygen", "-o", str(ident2)], capture_output=True, text=True,
                         check=True)
    recipient2 = [w for w in out.stderr.split() if w.startswith("age1")][0]
    path = tmp_path / "k.hex"
    r = run_module("encryption_key", {"path": str(path), "escrow_recipients": [recipient]})
    assert r["escrow_path"] == str(path) + ".age" and mode(r["escrow_path"]) == 0o600
    for who in (ident,):
        plain = subprocess.run(["age", "-d", "-i", str(who), r["escrow_path"]],
                               capture_output=True, check=True).stdout
        assert plain == path.read_bytes()
    assert not run_module("encryption_key", {"path": str(path),
                                             "escrow_recipients": [recipient]})["changed"]
    # A new recipient re-encrypts the same key for both.
    both = run_module("encryption_key", {"path": str(path),
                                         "escrow_recipients": [recipient, recipient2]})
    assert both["changed"] and [a["action"] for a in both["actions"]] == ["escrow"]
    for who in (ident, ident2):
        plain = subprocess.run(["age", "-d", "-i", str(who), both["escrow_path"]],
                               capture_output=True, check=True).stdout
        assert plain == path.read_bytes()


@needs_age
@pytest.mark.parametrize("size", [0, 1, 65536, 65536 * 2 + 7])
def test_age_stream_chunking_interoperates(tmp_path, identity, size):
    from ansible_collections.blindvault.storage.plugins.module_utils.keys import age
    ident, recipient = identity
    data = os.urandom(size)
    f = tmp_path / "blob.age"
    f.write_bytes(age.encrypt(data, [recipient]))
    out = subprocess.run(["age", "-d", "-i", str(ident), str(f)], capture_output=True, check=True)
    assert out.stdout == data


def test_recipient_parsing_catches_typos(identity):
    from ansible_collections.blindvault.storage.plugins.module_utils.keys import age
    _ident, recipient = identity
    assert len(age.parse_recipient(recipient)) == 32
    typo = recipient[:-1] + ("q" if recipient[-1] != "q" else "p")
    with pytest.raises(age.RecipientError, match="checksum"):
        age.parse_recipient(typo)


def test_list_form_one_call_many_keys_idempotent(tmp_path):
    keys = [{"path": str(tmp_path / "a.hex")},
            {"path": str(tmp_path / "b.pass"), "format": "passphrase"}]
    r = run_module("encryption_key", {"keys": keys})
    assert r["changed"] and [k["generated"] for k in r["keys"]] == [True, True]
    assert [k["path"] for k in r["keys"]] == [k["path"] for k in keys]
    assert mode(keys[0]["path"]) == 0o600 and len(open(keys[0]["path"], "rb").read()) == 64
    assert mode(keys[1]["path"]) == 0o600 and len(open(keys[1]["path"], "rb").read()) == 43
    again = run_module("encryption_key", {"keys": keys})
    assert not again["changed"] and not any(k["changed"] for k in again["keys"])


def test_list_form_top_level_defaults_and_check_mode(tmp_path):
    keys = [{"path": str(tmp_path / "a")}, {"path": str(tmp_path / "b"), "format": "hex"}]
    r = run_module("encryption_key", {"keys": keys, "format": "raw"}, check=True, diff=True)
    assert r["changed"] and [k["format"] for k in r["keys"]] == ["raw", "hex"]
    assert not os.path.exists(keys[0]["path"]) and len(r["diff"]) == 2


@pytest.mark.parametrize("keys,extra,message", [
    ([{"path": "A"}, {"path": "A"}], {}, "declared more than once"),
    ([{"path": "A"}, {"path": "/nonexistent-dir/k"}], {}, "does not exist"),
    ([{"path": "A"}, {"path": "B", "length": 8}], {}, "keys[1]: length must be"),
    ([{"path": "A"}], {"escrow_path": "/tmp/x.age"}, "escrow_path is per key"),
    ([{"format": "hex"}], {}, "keys[0]"),
])
def test_list_form_refuses_before_writing_anything(tmp_path, keys, extra, message):
    keys = [dict(k, path=str(tmp_path / k["path"])) if "path" in k and not k["path"].startswith("/")
            else k for k in keys]
    r = run_module("encryption_key", dict(extra, keys=keys))
    assert r.failed and message in r["msg"], r
    assert os.listdir(tmp_path) == []
