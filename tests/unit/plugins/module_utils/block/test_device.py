import os

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.block import device
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import Runner


def test_parse_export():
    text = "DEVNAME=/dev/loop0\nUUID=3f1e\nVERSION=2\nTYPE=crypto_LUKS\nUSAGE=crypto\n"
    fields = device.parse_export(text)
    assert fields["TYPE"] == "crypto_LUKS" and fields["UUID"] == "3f1e"


def test_probe_treats_rc2_as_blank(tmp_path, monkeypatch):
    script = tmp_path / "blkid"
    script.write_text("#!/bin/sh\nexit 2\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, os.environ["PATH"]))
    blank = tmp_path / "blank"
    blank.write_bytes(bytes(1 << 17))
    found = device.probe(Runner(), str(blank))
    assert found.empty and found.describe() == "no signature"
    # blkid also exits 2 when it cannot read the device: that is not "blank"
    with pytest.raises(Refusal, match="cannot be read"):
        device.probe(Runner(), str(tmp_path / "unreadable"))


def test_ambivalent_signatures_are_not_blank(tmp_path, monkeypatch):
    script = tmp_path / "blkid"
    script.write_text("#!/bin/sh\nexit 8\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, os.environ["PATH"]))
    found = device.probe(Runner(), "/dev/loop9")
    assert not found.empty and "conflicting" in found.describe()


def test_blkid_escapes_are_undone():
    fields = device.parse_export("LABEL=my\\ data\\$x\nTYPE=crypto_LUKS\n", unescape=True)
    assert fields["LABEL"] == "my data$x"


def test_probe_reads_a_signature(fake_tools):
    fake_tools({"blkid": "DEVNAME=/dev/loop1\nTYPE=ext4\nUUID=ab\n"})
    found = device.probe(Runner(), "/dev/loop1")
    assert found.type == "ext4" and not found.empty


def test_refuse_unless_blank_names_what_is_there():
    found = device.Probe("/dev/loop1", {"TYPE": "ext4", "UUID": "ab", "BLOCK_SIZE": "4096"})
    with pytest.raises(Refusal) as exc:
        device.refuse_unless_blank(found, False, "a LUKS2 volume")
    msg = str(exc.value)
    assert "/dev/loop1 already has a ext4 signature" in msg and "UUID=ab" in msg
    assert "force: true" in msg and "BLOCK_SIZE" not in msg
    device.refuse_unless_blank(found, True, "a LUKS2 volume")
    device.refuse_unless_blank(device.Probe("/dev/loop1"), False, "a LUKS2 volume")
    pt = device.Probe("/dev/loop1", {"PTTYPE": "gpt"})
    assert pt.describe() == "a gpt partition table"


def test_require_block_device(tmp_path):
    with pytest.raises(Refusal, match="does not exist"):
        device.require_block_device(str(tmp_path / "nope"))
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(Refusal, match="not a block device"):
        device.require_block_device(str(f))


def test_holders_and_dm_name_from_sysfs(tmp_path):
    (tmp_path / "loop3" / "holders" / "dm-2").mkdir(parents=True)
    (tmp_path / "dm-2" / "dm").mkdir(parents=True)
    (tmp_path / "dm-2" / "dm" / "name").write_text("int0\n")
    assert device.holders("/dev/loop3", sysfs=str(tmp_path)) == ["dm-2"]
    assert device.holders("/dev/loop4", sysfs=str(tmp_path)) == []
    assert device.dm_name("dm-2", sysfs=str(tmp_path)) == "int0"
    assert device.dm_name("loop3", sysfs=str(tmp_path)) is None


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", "a b", "a\tb", "a\nb", "x" * 128])
def test_bad_device_mapper_names_are_refused(name):
    with pytest.raises(Refusal, match="not a valid device-mapper name"):
        device.check_dm_name(name)


def test_a_free_path_is_not_in_use(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"")
    assert device.in_use(str(path), sysfs=str(tmp_path / "sys")) is None
