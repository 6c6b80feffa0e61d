"""luks2_volume's module layer on the host: input errors refused before any process starts,
secrets masked. Everything that touches dm-crypt runs in tests/integration inside the lab VM."""

import json

import pytest

from ansible_collections.blindvault.storage.tests.run_module import run_module


@pytest.fixture
def tools(fake_tools):
    return fake_tools({"cryptsetup": "", "blkid": ""})


@pytest.mark.parametrize("args,message", [
    (dict(integrity="hmac-sha256", allow_discards=True), "cannot pass discards"),
    (dict(integrity="poly1305", cipher="aes-xts-plain64"), "chacha20-random"),
    (dict(state="opened"), "name"),
    (dict(passphrase="long-enough-pass", key_file="/k"), "mutually exclusive"),
    (dict(integrity="sha1"), "integrity"),
    (dict(pbkdf="pbkdf2", pbkdf_memory=1024), "argon2id only"),
])
def test_bad_input_refused_before_any_process(tools, tmp_path, args, message):
    r = run_module("luks2_volume", dict(device=str(tmp_path / "dev"), **args))
    assert r.failed and message in r["msg"], r
    assert tools.read_text() == ""


def test_not_a_block_device(tools, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_module("luks2_volume", dict(device=str(f), passphrase="secret-words"))
    assert r.failed and "not a block device" in r["msg"]
    assert tools.read_text() == ""


def test_secrets_masked_in_the_result(tools, tmp_path):
    r = run_module("luks2_volume", dict(device=str(tmp_path / "nope"), passphrase="top-secret-1",
                                        add_keys=["top-secret-2"], remove_keys=["top-secret-3"]))
    assert r.failed and "does not exist" in r["msg"]
    text = json.dumps(r)
    assert "top-secret" not in text


def test_list_form_validates_every_item_first_and_masks_nested_secrets(tools, tmp_path):
    volumes = [dict(device=str(tmp_path / "a"), name="m0", passphrase="nested-secret-1",
                    add_keys=["nested-secret-2"]),
               dict(device=str(tmp_path / "b"), name="m1", integrity="hmac-sha256",
                    allow_discards=True)]
    r = run_module("luks2_volume", dict(volumes=volumes, state="opened"))
    assert r.failed and "cannot pass discards" in r["msg"], r
    assert tools.read_text() == ""  # the first item's device was not even probed
    assert "nested-secret" not in json.dumps(r)
    r = run_module("luks2_volume", dict(device=str(tmp_path / "a"), volumes=volumes))
    assert r.failed and "mutually exclusive" in r["msg"]
