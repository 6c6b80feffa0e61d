"""dm-integrity: parsers of dmsetup/integritysetup output and the planner's decisions."""

import os

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.block import device as blockdev
from ansible_collections.blindvault.storage.plugins.module_utils.block import integrity
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import Result

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "integrity")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


class FakeRunner:
    """Answers read commands from a table keyed by the first two argv words."""

    def __init__(self, answers, check_mode=False):
        self.answers = answers
        self.check_mode = check_mode
        self.history = []

    def run(self, argv, changes=False, check=True, **kw):
        self.history.append(argv)
        if changes and self.check_mode:
            return Result(argv, 0, "", "", ran=False)
        rc, out = self.answers.get(tuple(argv[:2]), (0, ""))
        return Result(argv, rc, out, "")


@pytest.fixture
def dev(monkeypatch, tmp_path):
    """A stand-in block device: any path passes require_block_device; st_rdev is 7:5."""
    path = str(tmp_path / "loop5")
    open(path, "w").close()
    monkeypatch.setattr(blockdev, "require_block_device", lambda p, what="device": p)
    monkeypatch.setattr(blockdev, "holders", lambda p, sysfs=None: [])
    real_stat = os.stat

    class St:
        st_rdev = os.makedev(7, 5)
        st_size = 32

    monkeypatch.setattr(integrity.os, "stat",
                        lambda p, *a, **k: St if p == path else real_stat(p, *a, **k))
    return path


def test_parse_dmsetup_reads_mode_algorithm_sector_size_and_failures():
    maps = integrity.parse_dmsetup(fixture("dmsetup-table.txt"), fixture("dmsetup-status.txt"))
    assert set(maps) >= {"int0", "int1"}
    m = maps["int1"]
    assert m.algorithm == "crc32c" and m.tag_size == 4 and m.sector_size == 4096
    assert m.failures > 0 and m.sectors > 0 and len(m.majmin) == 2
    assert {maps[n].journal for n in maps} <= {"journal", "bitmap", "none"}
    assert integrity.parse_dmsetup("No devices found\n", "No devices found\n") == {}


def test_parse_dump_reads_the_superblock():
    sb = integrity.parse_dump(fixture("dump.txt"))
    assert sb.tag_size == 4 and sb.sector_size == 4096 and sb.provided_sectors > 0
    with pytest.raises(Refusal, match="cannot read the dm-integrity superblock"):
        integrity.parse_dump("garbage")


def test_spec_validation_names_the_problem(dev, tmp_path):
    S = integrity.IntegritySpec
    with pytest.raises(Refusal, match="needs name"):
        S(dev)
    with pytest.raises(Refusal, match="needs key_file"):
        S(dev, "x", algorithm="hmac-sha256")
    with pytest.raises(Refusal, match="only used with a keyed algorithm"):
        S(dev, "x", key_file=dev)
    with pytest.raises(Refusal, match="does not fit"):
        S(dev, "x", tag_size=8)
    short = tmp_path / "short.key"
    short.write_bytes(b"k" * 8)
    with pytest.raises(Refusal, match="16 to 4096 bytes"):
        S(dev, "x", algorithm="hmac-sha256", key_file=str(short))
    assert S(dev, state="closed").wanted_tag_size == 4
    assert S(dev, "x", algorithm="sha256").wanted_tag_size == 32


def test_blank_device_plans_format_zero_fill_and_open(dev):
    runner = FakeRunner({("blkid", "-p"): (2, "")}, check_mode=True)
    spec = integrity.IntegritySpec(dev, "m0", wipe="zero", journal="bitmap")
    ip = integrity.plan_item(runner, spec, {})
    assert [s.action for s in ip.plan.steps] == ["format", "open", "zero", "close", "open"]
    fmt = ip.plan.steps[0].argv
    assert "--no-wipe" in fmt and fmt[fmt.index("--sector-size") + 1] == "4096"
    assert "--integrity-no-journal" in ip.plan.steps[1].argv
    assert "--integrity-bitmap-mode" in ip.plan.steps[-1].argv
    assert ip.after["state"] == "opened" and ip.after["journal"] == "bitmap"


def test_wipe_none_warns_that_unwritten_sectors_read_as_eio(dev):
    runner = FakeRunner({("blkid", "-p"): (2, "")}, check_mode=True)
    ip = integrity.plan_item(runner, integrity.IntegritySpec(dev, "m0", wipe="none"), {})
    assert [s.action for s in ip.plan.steps] == ["format", "open"]
    assert "EIO" in ip.plan.warnings[0]


def test_a_signature_is_refused_and_a_mismatched_superblock_is_reported(dev):
    runner = FakeRunner({("blkid", "-p"): (0, "TYPE=ext4\nUUID=ab\n")})
    with pytest.raises(Refusal, match="already has a ext4 signature"):
        integrity.plan_item(runner, integrity.IntegritySpec(dev, "m0"), {})
    runner = FakeRunner({("blkid", "-p"): (0, "TYPE=DM_integrity\n"),
                         ("integritysetup", "dump"): (0, fixture("dump.txt"))})
    with pytest.raises(Refusal, match="refusing to reformat"):
        integrity.plan_item(runner, integrity.IntegritySpec(dev, "m0", algorithm="sha256"), {})
    ip = integrity.plan_item(runner, integrity.IntegritySpec(dev, "m0"), {})
    assert [s.action for s in ip.plan.steps] == ["open"]
    with pytest.raises(Refusal, match="force: true"):
        integrity.plan_item(runner, integrity.IntegritySpec(dev, state="absent"), {})


def test_an_open_mapping_is_left_alone_or_reopened_for_another_journal(dev):
    runner = FakeRunner({("blkid", "-p"): (0, "TYPE=DM_integrity\n"),
                         ("integritysetup", "dump"): (0, fixture("dump.txt"))})
    mapping = integrity.Mapping("m0", (7, 5), 4, "J", 4096, "crc32c", 0, 1000)
    ip = integrity.plan_item(runner, integrity.IntegritySpec(dev, "m0"), {"m0": mapping})
    assert not ip.plan.steps and ip.before == ip.after
    ip = integrity.plan_item(runner, integrity.IntegritySpec(dev, "m0", journal="none"),
                             {"m0": mapping})
    assert [s.action for s in ip.plan.steps] == ["close", "open"]
    with pytest.raises(Refusal, match="already open as m0"):
        integrity.plan_item(runner, integrity.IntegritySpec(dev, "other"), {"m0": mapping})
    with pytest.raises(Refusal, match="algorithm crc32c, not crc32"):
        integrity.plan_item(runner, integrity.IntegritySpec(dev, "m0", algorithm="crc32"),
                            {"m0": mapping})
