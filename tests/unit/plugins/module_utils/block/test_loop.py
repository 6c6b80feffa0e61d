import dataclasses
import os

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.block import loop
from ansible_collections.blindvault.storage.plugins.module_utils.block.loop import (
    Attachment,
    LoopSpec,
    decide_direct_io,
    parse_losetup_json,
    parse_size,
    plan_item,
)
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal


@pytest.mark.parametrize("text,expected", [
    ("64M", 64 << 20), ("64MiB", 64 << 20), ("64MB", 64_000_000), ("1G", 1 << 30),
    ("512", 512), (4096, 4096), ("2k", 2048), (" 3 T ", 3 << 40),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1M", "1.5G", "0", "64Q", True, 0])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(Refusal):
        parse_size(text)


def test_parse_recorded_losetup_list(fixture_text):
    devs = parse_losetup_json(fixture_text("losetup-list.json"))
    by_file = {d.file: d for d in devs}
    dio = by_file["/srv/lab/mnt/dio.img"]
    assert dio.device.startswith("/dev/loop")
    assert dio.direct_io is True and dio.sector_size == 4096 and dio.read_only is False
    ro = by_file["/srv/lab/mnt/ro.img"]
    assert ro.read_only is True and ro.direct_io is False and ro.sector_size == 512
    assert by_file["/srv/lab/mnt/with space.img"].inode > 0
    gone = [d for d in devs if d.deleted]
    assert len(gone) == 1 and gone[0].file.startswith("/srv/lab/mnt/gone.img")


def test_recorded_attachment_matches_its_file_by_inode_and_device(fixture_text):
    name, ino, dev = fixture_text("losetup-list.stat").rsplit(" ", 2)
    devs = {d.file: d for d in parse_losetup_json(fixture_text("losetup-list.json"))}

    class St:
        st_ino = int(ino)
        st_dev = int(dev)

    assert devs[name].backs(St)
    St.st_ino += 1
    assert not devs[name].backs(St)


def test_deleted_backing_file_never_matches_a_new_inode():
    a = Attachment("/dev/loop0", "/x (deleted)", 12, (8, 1))

    class St:
        st_ino = 12
        st_dev = os.makedev(8, 1)

    assert not a.backs(St)


def test_parse_empty_losetup_output(fixture_text):
    assert parse_losetup_json("") == []
    assert parse_losetup_json(fixture_text("losetup-none.json")) == []


@pytest.mark.parametrize("mode,fs,want", [
    ("auto", "ext4", True), ("auto", "xfs", True), ("auto", "btrfs", False),
    ("auto", "zfs", False), ("auto", "tmpfs", False), ("auto", "overlay", False),
    ("auto", "unknown (0x1234)", False), ("off", "ext4", False), ("on", "xfs", True),
])
def test_decide_direct_io(mode, fs, want):
    assert decide_direct_io(mode, fs)[0] is want


def test_btrfs_auto_reason_names_the_seed():
    assert "checksum" in decide_direct_io("auto", "btrfs")[1]


@pytest.mark.parametrize("fs", ["btrfs", "zfs", "tmpfs"])
def test_direct_io_on_refused_where_unsafe_unless_forced(fs):
    with pytest.raises(Refusal, match="direct_io: on refused"):
        decide_direct_io("on", fs)
    assert decide_direct_io("on", fs, force=True)[0] is True


@pytest.mark.parametrize("kwargs,message", [
    (dict(file="rel/disk.img"), "absolute path"),
    (dict(file="/x", state="gone"), "state must be"),
    (dict(file="/x", direct_io="maybe"), "direct_io must be"),
    (dict(file="/x", sector_size=1024), "sector_size"),
    (dict(file="/x", size="64M", state="absent"), "size only applies"),
    (dict(file="/x", size="1000", sector_size=4096), "multiple of sector_size"),
])
def test_spec_validation(kwargs, message):
    with pytest.raises(Refusal, match=message):
        LoopSpec(**kwargs)


@pytest.fixture
def ext4(monkeypatch):
    monkeypatch.setattr(loop, "fs_type", lambda path: "ext4")


@pytest.fixture
def btrfs(monkeypatch):
    monkeypatch.setattr(loop, "fs_type", lambda path: "btrfs")


def attached(path, **kw):
    st = os.stat(path)
    return Attachment("/dev/loop7", str(path), st.st_ino, (os.major(st.st_dev), os.minor(st.st_dev)),
                      **kw)


def actions(ip):
    return [s.action for s in ip.plan.steps]


def test_plan_new_file(tmp_path, ext4):
    ip = plan_item(LoopSpec(str(tmp_path / "d.img"), size="64M"), [])
    assert actions(ip) == ["create-file", "attach"]
    assert ip.plan.steps[1].argv == ["losetup", "--find", "--show", "--direct-io=on",
                                     str(tmp_path / "d.img")]
    assert ip.after["direct_io"] is True and ip.before == {"state": "absent"}


def test_plan_existing_attachment_is_a_noop(tmp_path, ext4):
    f = tmp_path / "d.img"
    f.write_bytes(b"\0" * 4096)
    ip = plan_item(LoopSpec(str(f), size="4096"), [attached(f, direct_io=True)])
    assert actions(ip) == []
    assert ip.before == ip.after


def test_plan_reconciles_direct_io_and_sector_size_live(tmp_path, btrfs):
    f = tmp_path / "d.img"
    f.write_bytes(b"\0" * 8192)
    ip = plan_item(LoopSpec(str(f), sector_size=4096), [attached(f, direct_io=True)])
    assert actions(ip) == ["set-sector-size", "set-direct-io"]
    assert ip.plan.steps[1].argv == ["losetup", "--direct-io=off", "/dev/loop7"]


def test_plan_grows_and_tells_the_device(tmp_path, ext4):
    f = tmp_path / "d.img"
    f.write_bytes(b"\0" * 4096)
    ip = plan_item(LoopSpec(str(f), size="8192"), [attached(f, direct_io=True)])
    assert actions(ip) == ["grow-file", "set-capacity"]


def test_plan_refuses_to_shrink(tmp_path, ext4):
    f = tmp_path / "d.img"
    f.write_bytes(b"\0" * 8192)
    with pytest.raises(Refusal, match="refusing to shrink"):
        plan_item(LoopSpec(str(f), size="4096"), [])


def test_plan_refuses_missing_file_without_size(tmp_path, ext4):
    with pytest.raises(Refusal, match="give size"):
        plan_item(LoopSpec(str(tmp_path / "nope.img")), [])


def test_plan_refuses_missing_parent(tmp_path, ext4):
    with pytest.raises(Refusal, match="parent directory"):
        plan_item(LoopSpec(str(tmp_path / "no" / "d.img"), size="1M"), [])


def test_plan_refuses_non_regular_file(tmp_path, ext4):
    with pytest.raises(Refusal, match="not a regular file"):
        plan_item(LoopSpec(str(tmp_path)), [])


def test_plan_read_only_change_needs_force(tmp_path, ext4):
    f = tmp_path / "d.img"
    f.write_bytes(b"\0" * 4096)
    with pytest.raises(Refusal, match="read_only cannot change"):
        plan_item(LoopSpec(str(f), read_only=True), [attached(f, direct_io=True)])
    ip = plan_item(LoopSpec(str(f), read_only=True, force=True), [attached(f, direct_io=True)])
    assert actions(ip) == ["detach", "attach"]
    assert "--read-only" in ip.plan.steps[1].argv


def test_plan_detach_every_attachment_then_remove(tmp_path, ext4):
    f = tmp_path / "d.img"
    f.write_bytes(b"\0" * 4096)
    a = attached(f)
    b = dataclasses.replace(a, device="/dev/loop9")
    ip = plan_item(LoopSpec(str(f), state="absent"), [a, b])
    assert actions(ip) == ["detach", "detach", "remove-file"]
    assert ip.after == {"state": "absent"}


def test_plan_detached_missing_file_is_a_noop(tmp_path):
    ip = plan_item(LoopSpec(str(tmp_path / "nope.img"), state="absent"), [])
    assert actions(ip) == []


def test_fs_type_reads_the_kernel(tmp_path):
    # The host's own filesystem for tmp_path: whatever it is, it has a name or a magic.
    assert loop.fs_type(str(tmp_path))
