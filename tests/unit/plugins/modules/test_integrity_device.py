"""integrity_device's module layer on the host: input errors refused before any process starts.
Everything that touches dm-integrity runs in tests/integration inside the lab VM."""

import pytest

from ansible_collections.blindvault.storage.tests.run_module import run_module


@pytest.fixture
def tools(fake_tools):
    return fake_tools({"dmsetup": "No devices found\n", "blkid": "", "integritysetup": ""})


@pytest.mark.parametrize("args,message", [
    (dict(device="/dev/null"), "needs name"),
    (dict(device="/dev/null", name="x", algorithm="hmac-sha256"), "needs key_file"),
    (dict(device="/dev/null", name="x", tag_size=64), "does not fit"),
    (dict(device="/dev/null", name="x", journal="sometimes"), "journal"),
    (dict(device="/dev/null", devices=[dict(device="/dev/null")]), "mutually exclusive"),
    (dict(devices=[dict(device="/dev/null", name="a"), dict(name="b")]), "devices[1]"),
])
def test_bad_input_refused_before_any_process(tools, args, message):
    r = run_module("integrity_device", args)
    assert r.failed and message in r["msg"], r
    assert tools.read_text() == ""


def test_not_a_block_device(tools, tmp_path):
    r = run_module("integrity_device", dict(device=str(tmp_path), name="x"))
    assert r.failed and "not a block device" in r["msg"]
    assert tools.read_text() == ""
