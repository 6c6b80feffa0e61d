
import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.block import device as blockdev
from ansible_collections.blindvault.storage.plugins.module_utils.block import md
from ansible_collections.blindvault.storage.plugins.module_utils.block.md import (
    Array,
    Member,
    MdSpec,
    parse_export,
    plan_array,
)
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import Runner

DETAIL = """MD_LEVEL=raid5
MD_DEVICES=3
MD_METADATA=1.2
MD_UUID=3c1b5a4e:1f0e2a7b:9d8c6f5e:4a3b2c1d
MD_DEVNAME=r5
MD_NAME=any:r5
MD_DEVICE_dev_loop0_ROLE=0
MD_DEVICE_dev_loop0_DEV=/dev/loop0
MD_DEVICE_dev_loop1_ROLE=1
MD_DEVICE_dev_loop1_DEV=/dev/loop1
MD_DEVICE_dev_loop2_ROLE=2
MD_DEVICE_dev_loop2_DEV=/dev/loop2
"""

BLKID = """DEVNAME=/dev/loop0
UUID=3c1b5a4e-1f0e-2a7b-9d8c-6f5e4a3b2c1d
UUID_SUB=aa
LABEL=any:r5
TYPE=linux_raid_member

DEVNAME=/dev/loop2
UUID=ab
BLOCK_SIZE=4096
TYPE=ext4
"""


def test_parse_export():
    d = parse_export(DETAIL)
    assert d["MD_LEVEL"] == "raid5" and d["MD_NAME"] == "any:r5"
    assert md.md_level_number(d["MD_LEVEL"]) == 5 and md.md_level_number("linear") is None
    assert md.label_name(d["MD_NAME"]) == "r5" and md.label_name("r5") == "r5"


def test_probe_members_probes_each_device_on_its_own(monkeypatch):
    # blkid -p DEV1 DEV2 stops at the first device without a signature: one probe per device.
    seen = []

    def probe(runner, dev):
        seen.append(dev)
        return blockdev.Probe(dev, {"TYPE": "ext4"} if dev == "/dev/loop1" else {})
    monkeypatch.setattr(blockdev, "probe", probe)
    got = md.probe_members(Runner(), ["/dev/loop0", "/dev/loop1"])
    assert got == {"/dev/loop0": {}, "/dev/loop1": {"TYPE": "ext4"}} and seen == ["/dev/loop0", "/dev/loop1"]


def test_ours_matches_label_or_uuid():
    f = blockdev.parse_export(BLKID.split("\n\n", maxsplit=1)[0])
    assert md._ours(f, "r5")
    assert not md._ours(f, "other")
    assert md._ours(f, "other", uuid="3c1b5a4e:1f0e2a7b:9d8c6f5e:4a3b2c1d")
    assert not md._ours({"TYPE": "ext4", "LABEL": "r5"}, "r5")


@pytest.mark.parametrize("value,kib", [("64K", 64), ("512K", 512), ("1M", 1024), ("512", 512), (64, 64)])
def test_chunk(value, kib):
    assert md.chunk_kib(value) == kib


@pytest.mark.parametrize("value", ["3K", "100K", "1000", "2", "big"])
def test_chunk_refuses(value):
    with pytest.raises(Refusal):
        md.chunk_kib(value)


@pytest.fixture
def blockdevs(monkeypatch):
    """Every /dev/fakeN path is a block device; anything else does not exist."""
    def fake(path, what="device"):
        if not path.startswith("/dev/fake") and not path.startswith("/dev/loop"):
            raise Refusal("%s %s does not exist" % (what, path))
        return path
    monkeypatch.setattr(blockdev, "require_block_device", fake)
    monkeypatch.setattr(blockdev, "holders", lambda dev, sysfs=None: [])


def devs(n, prefix="/dev/loop"):
    return ["%s%d" % (prefix, i) for i in range(n)]


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="r5", level=5, devices=devs(2)), "RAID5 needs at least 3 devices"),
    (dict(name="r6", level=6, devices=devs(3)), "RAID6 needs at least 4"),
    (dict(name="r1", level=1, devices=devs(1)), "RAID1 needs at least 2"),
    (dict(name="r5", level=5, devices=["/dev/loop0", "/dev/loop1", "/dev/loop0"]), "more than once"),
    (dict(name="r5", level=5, devices=devs(3), spares=["/dev/loop2"]), "more than once"),
    (dict(name="r5", level=5, devices=["/dev/loop0", "/dev/loop1", "/nonexistent"]), "does not exist"),
    (dict(name="r5", level=5, devices=["loop0", "loop1", "loop2"]), "absolute"),
    (dict(name="a/b", level=1, devices=devs(2)), "not an md array name"),
    (dict(name="r4", level=4, devices=devs(3)), "level must be"),
    (dict(name="r4", level="raidx", devices=devs(3)), "level must be"),
    (dict(name="r1", level=1, devices=devs(2), chunk="64K"), "chunk does not apply"),
    (dict(name="r1", level=1, devices=devs(2), state="gone"), "state must be"),
    (dict(name="r1", state="stopped", action="check"), "need a running array"),
    (dict(name="r1", level=1, state="present"), "devices are not"),
    (dict(name="r1", spares=["/dev/loop3"]), "spares need devices"),
])
def test_spec_validation(blockdevs, kwargs, message):
    with pytest.raises(Refusal, match=message):
        MdSpec(**kwargs)


def make_array(level=5, n=3, states=None, sync_action="idle", bitmap="+8", raid_disks=None):
    detail = parse_export(DETAIL.replace("raid5", "raid%d" % level))
    arr = Array("/dev/md/r5", "md127", detail, {
        "array_state": "clean", "level": "raid%d" % level, "raid_disks": str(raid_disks or n),
        "chunk_size": "524288", "degraded": "0", "sync_action": sync_action,
        "mismatch_cnt": "0", "metadata_version": "1.2", "bitmap/location": bitmap})
    states = states or ["in_sync"] * n
    arr.members = [Member("loop%d" % i, "/dev/loop%d" % i, i if st != "faulty" else None, st, 0)
                   for i, st in enumerate(states)]
    return arr


@pytest.fixture
def world(monkeypatch, blockdevs):
    """Fake state: the running array (or None) and blkid probes per device."""
    state = {"array": None, "probes": {}, "probe_calls": []}
    monkeypatch.setattr(md, "read_array", lambda runner, path, sysfs=None: state["array"])

    def probe(runner, devices):
        state["probe_calls"].append(list(devices))
        return {d: state["probes"].get(d, {}) for d in devices}
    monkeypatch.setattr(md, "probe_members", probe)
    return state


def actions(mp):
    return [s.action for s in mp.plan.steps]


def test_create_over_blank_members(world):
    mp = plan_array(MdSpec("r5", level=5, devices=devs(3), chunk="64K", bitmap="internal",
                           assume_clean=True), Runner(check_mode=True))
    assert actions(mp) == ["create"]
    argv = mp.plan.steps[0].argv
    assert argv[:4] == ["mdadm", "--create", "/dev/md/r5", "--run"]
    assert "--homehost=any" in argv and "--level=5" in argv and "--raid-devices=3" in argv
    assert "--chunk=64" in argv and "--bitmap=internal" in argv and "--assume-clean" in argv
    assert "--metadata=1.2" in argv and argv[-3:] == devs(3)
    assert world["probe_calls"] == [devs(3)]  # read once, before planning
    assert mp.before == {"state": "absent"} and mp.after["state"] == "running"


def test_create_with_spares(world):
    mp = plan_array(MdSpec("r1", level=1, devices=devs(2), spares=["/dev/loop5"]), Runner())
    argv = mp.plan.steps[0].argv
    assert "--spare-devices=1" in argv and argv[-3:] == ["/dev/loop0", "/dev/loop1", "/dev/loop5"]


def test_create_refuses_a_signature_unless_forced(world):
    world["probes"]["/dev/loop2"] = {"TYPE": "ext4", "UUID": "ab"}
    with pytest.raises(Refusal, match="loop2 already has a ext4 signature.*force: true"):
        plan_array(MdSpec("r5", level=5, devices=devs(3)), Runner())
    mp = plan_array(MdSpec("r5", level=5, devices=devs(3), force=True), Runner())
    assert actions(mp) == ["create"] and "force" in mp.plan.steps[0].reason


def test_members_with_its_superblock_are_assembled_not_created(world):
    for d in devs(3):
        world["probes"][d] = {"TYPE": "linux_raid_member", "LABEL": "any:r5", "UUID": "u"}
    mp = plan_array(MdSpec("r5", level=5, devices=devs(3)), Runner())
    assert actions(mp) == ["assemble"]
    assert mp.plan.steps[0].argv == ["mdadm", "--assemble", "/dev/md/r5"] + devs(3)
    assert mp.before["state"] == "stopped"
    mp = plan_array(MdSpec("r5", state="assembled", devices=devs(3)), Runner())
    assert actions(mp) == ["assemble"]
    # force is about other signatures: it never turns the named array into a new one
    mp = plan_array(MdSpec("r5", level=5, devices=devs(3), force=True), Runner())
    assert actions(mp) == ["assemble"]


def test_another_arrays_member_is_refused(world):
    for d in devs(3):
        world["probes"][d] = {"TYPE": "linux_raid_member", "LABEL": "any:other", "UUID": "u"}
    with pytest.raises(Refusal, match="linux_raid_member"):
        plan_array(MdSpec("r5", level=5, devices=devs(3)), Runner())
    with pytest.raises(Refusal, match="no listed device carries its md superblock"):
        plan_array(MdSpec("r5", state="assembled", devices=devs(3)), Runner())


def test_partial_superblocks_refuse_assembly(world):
    world["probes"]["/dev/loop0"] = {"TYPE": "linux_raid_member", "LABEL": "any:r5"}
    with pytest.raises(Refusal, match="cannot assemble"):
        plan_array(MdSpec("r5", state="assembled", devices=devs(3)), Runner())
    with pytest.raises(Refusal, match="cannot assemble.*state: absent, force: true"):
        plan_array(MdSpec("r5", level=5, devices=devs(3), force=True), Runner())


def test_running_array_as_requested_is_unchanged(world):
    world["array"] = make_array()
    mp = plan_array(MdSpec("r5", level=5, devices=devs(3)), Runner())
    assert actions(mp) == [] and mp.before == mp.after
    assert world["probe_calls"] == []  # nothing probed for a running array


@pytest.mark.parametrize("kwargs,message", [
    (dict(level=1, devices=devs(3)), "level is RAID5, requested RAID1"),
    (dict(level=5, devices=devs(4)), "3 raid devices, requested 4"),
    (dict(level=5, devices=["/dev/loop0", "/dev/loop1", "/dev/loop7"]), "not listed"),
    (dict(level=5, devices=devs(3), chunk="64K"), "chunk is 512K"),
])
def test_running_array_that_differs_is_reported_not_rebuilt(world, kwargs, message):
    world["array"] = make_array()
    with pytest.raises(Refusal, match=message) as exc:
        plan_array(MdSpec("r5", **kwargs), Runner())
    assert "never reshapes" in str(exc.value)


def test_bitmap_changes_live(world):
    world["array"] = make_array(bitmap="none")
    mp = plan_array(MdSpec("r5", bitmap="internal"), Runner())
    assert [s.argv for s in mp.plan.steps] == [["mdadm", "--grow", "/dev/md/r5", "--bitmap=internal"]]


def test_stop_and_absent(world):
    world["array"] = make_array()
    mp = plan_array(MdSpec("r5", state="stopped"), Runner())
    assert [s.argv for s in mp.plan.steps] == [["mdadm", "--stop", "/dev/md/r5"]]
    with pytest.raises(Refusal, match="destroys the array.*force: true"):
        plan_array(MdSpec("r5", state="absent"), Runner())
    mp = plan_array(MdSpec("r5", state="absent", force=True), Runner())
    assert actions(mp) == ["stop"] + ["zero-superblock"] * 3
    assert mp.after == {"state": "absent"}


def test_absent_of_stopped_members_zeroes_only_its_own(world):
    world["probes"] = {"/dev/loop0": {"TYPE": "linux_raid_member", "LABEL": "any:r5"},
                       "/dev/loop1": {"TYPE": "linux_raid_member", "LABEL": "any:other"},
                       "/dev/loop2": {}}
    mp = plan_array(MdSpec("r5", state="absent", force=True, devices=devs(3)), Runner())
    assert [s.argv for s in mp.plan.steps] == [["mdadm", "--zero-superblock", "/dev/loop0"]]
    assert any("another array" in w for w in mp.plan.warnings)


def test_absent_when_gone_needs_no_force(world):
    mp = plan_array(MdSpec("r5", state="absent", devices=devs(3)), Runner())
    assert actions(mp) == []
    mp = plan_array(MdSpec("r5", state="stopped"), Runner())
    assert actions(mp) == [] and "not running" in mp.plan.warnings[0]


def test_readd_failed_removes_then_readds(world):
    world["array"] = make_array(states=["in_sync", "faulty", "in_sync"])
    mp = plan_array(MdSpec("r5", level=5, devices=devs(3)), Runner())
    assert actions(mp) == []  # without readd_failed a faulty member is only reported
    mp = plan_array(MdSpec("r5", level=5, devices=devs(3), readd_failed=True), Runner())
    assert [s.argv for s in mp.plan.steps] == [
        ["mdadm", "--manage", "/dev/md/r5", "--remove", "/dev/loop1"],
        ["mdadm", "--manage", "/dev/md/r5", "--re-add", "/dev/loop1"]]


def test_readd_missing_member_only_with_its_superblock(world):
    arr = make_array()
    arr.members = arr.members[:2]
    world["array"] = arr
    with pytest.raises(Refusal, match="not members"):
        plan_array(MdSpec("r5", level=5, devices=devs(3)), Runner())
    with pytest.raises(Refusal, match="re-adds only the array's own members"):
        plan_array(MdSpec("r5", level=5, devices=devs(3), readd_failed=True), Runner())
    world["probes"]["/dev/loop2"] = {"TYPE": "linux_raid_member", "LABEL": "any:r5",
                                     "UUID": "3c1b5a4e-1f0e-2a7b-9d8c-6f5e4a3b2c1d"}
    mp = plan_array(MdSpec("r5", level=5, devices=devs(3), readd_failed=True), Runner())
    assert actions(mp) == ["re-add"] and mp.plan.steps[0].obj == "/dev/loop2"


def test_actions(world):
    world["array"] = make_array()
    mp = plan_array(MdSpec("r5", action="check"), Runner())
    assert actions(mp) == ["sync-action"] and "md127/md/sync_action" in mp.plan.steps[0].reason
    assert mp.after["sync_action"] == "check"
    assert actions(plan_array(MdSpec("r5", action="idle"), Runner())) == []
    world["array"] = make_array(sync_action="check")
    assert actions(plan_array(MdSpec("r5", action="check"), Runner())) == []
    assert actions(plan_array(MdSpec("r5", action="idle"), Runner())) == ["sync-action"]
    world["array"] = make_array(sync_action="resync")
    with pytest.raises(Refusal, match="busy with resync.*wait: true"):
        plan_array(MdSpec("r5", action="check"), Runner())
    assert actions(plan_array(MdSpec("r5", action="check", wait=True), Runner())) == ["sync-action"]


def test_not_running_without_devices(world):
    with pytest.raises(Refusal, match="not running; list its members"):
        plan_array(MdSpec("r5", state="assembled"), Runner())
    with pytest.raises(Refusal, match="not running"):
        plan_array(MdSpec("r5", action="check"), Runner())


def test_device_in_use_elsewhere_is_refused(world, monkeypatch):
    monkeypatch.setattr(blockdev, "holders", lambda dev, sysfs=None: ["dm-4"] if dev == "/dev/loop1" else [])
    with pytest.raises(Refusal, match="loop1 is in use by dm-4"):
        plan_array(MdSpec("r5", level=5, devices=devs(3), force=True), Runner())


def test_read_sysfs(tmp_path):
    base = tmp_path / "md127" / "md"
    (base / "bitmap").mkdir(parents=True)
    for attr, value in {"array_state": "clean", "level": "raid5", "raid_disks": "3",
                        "degraded": "1", "sync_action": "idle", "mismatch_cnt": "128",
                        "chunk_size": "65536", "bitmap/location": "+8"}.items():
        (base / attr).write_text(value + "\n")
    for kn, slot, st, err in (("loop0", "0", "in_sync", "0"), ("dm-1", "none", "faulty", "1864"),
                              ("loop3", "none", "spare", "0")):
        d = base / ("dev-" + kn)
        d.mkdir()
        (d / "slot").write_text(slot + "\n")
        (d / "state").write_text(st + "\n")
        (d / "errors").write_text(err + "\n")
    attrs, members = md.read_sysfs("md127", sysfs=str(tmp_path))
    arr = Array("/dev/md/r5", "md127", {}, attrs)
    arr.members = members
    assert arr.level == 5 and arr.degraded is True and arr.mismatch_cnt == 128
    assert arr.chunk == 64 and arr.bitmap == "internal"
    by = {m.kname: m for m in members}
    assert by["dm-1"].faulty and by["dm-1"].errors == 1864 and by["dm-1"].slot is None
    assert by["loop3"].spare and not by["loop0"].spare and by["loop0"].slot == 0
    assert by["dm-1"].as_dict()["device"] == "/dev/dm-1"


def test_wait_idle_polls_sysfs(tmp_path):
    base = tmp_path / "md9" / "md"
    base.mkdir(parents=True)
    (base / "sync_action").write_text("idle\n")
    (base / "degraded").write_text("0\n")
    assert md.wait_idle("md9", 5, sysfs=str(tmp_path)) < 1
    (base / "sync_action").write_text("check\n")
    with pytest.raises(Refusal, match="still check"):
        md.wait_idle("md9", 0.3, sysfs=str(tmp_path), poll=0.05)


def _sysfs(tmp_path, monkeypatch, degraded):
    md_dir = tmp_path / "md127" / "md"
    md_dir.mkdir(parents=True)
    (md_dir / "degraded").write_text("%d\n" % degraded)
    (md_dir / "raid_disks").write_text("3\n")
    monkeypatch.setattr(md, "SYSFS_BLOCK", str(tmp_path))


class RefusingReadd(Runner):
    def __init__(self):
        super().__init__()
        self.calls = []

    def run(self, argv, changes=False, check=True, **kw):
        from ansible_collections.blindvault.storage.plugins.module_utils.runner import Result
        self.calls.append(argv)
        rc = 1 if "--re-add" in argv else 0
        return Result(argv, rc, "", "mdadm: --re-add for /dev/loop1 to /dev/md/r5 is not possible")


def test_readd_falls_back_to_zero_and_add(tmp_path, monkeypatch):
    _sysfs(tmp_path, monkeypatch, degraded=1)
    runner = RefusingReadd()
    how = md._readd(runner, "/dev/md/r5", "/dev/loop1", "md127", 5)
    assert "full rebuild" in how and "not possible" in how
    assert runner.calls == [["mdadm", "--manage", "/dev/md/r5", "--re-add", "/dev/loop1"],
                            ["mdadm", "--zero-superblock", "/dev/loop1"],
                            ["mdadm", "--manage", "/dev/md/r5", "--add", "/dev/loop1"]]


def test_readd_never_zeroes_a_member_of_an_array_that_lost_too_many(tmp_path, monkeypatch):
    _sysfs(tmp_path, monkeypatch, degraded=2)  # RAID5 without two members: its data is gone
    runner = RefusingReadd()                   # until they are assembled back with --force
    with pytest.raises(Refusal, match="not zeroing its superblock"):
        md._readd(runner, "/dev/md/r5", "/dev/loop1", "md127", 5)
    assert runner.calls == [["mdadm", "--manage", "/dev/md/r5", "--re-add", "/dev/loop1"]]


def test_recorded_detail_and_member_probe_agree(fixture_text):
    """mdadm 4.2 writes the UUID with colons, blkid with dashes: the member is still ours."""
    detail = parse_export(fixture_text("mdadm-detail-export.txt"))
    assert md.md_level_number(detail["MD_LEVEL"]) == 5 and detail["MD_DEVICES"] == "3"
    assert md.label_name(detail["MD_NAME"]) == detail["MD_DEVNAME"] == "fx5"
    member = blockdev.parse_export(fixture_text("blkid-md-member.txt"))
    assert md._ours(member, "fx5")
    assert md._ours(member, "renamed", uuid=detail["MD_UUID"])
    assert not md._ours(member, "fx5", uuid="00000000:00000000:00000000:00000000")


def test_recorded_detail_calls_a_faulty_member_spare(fixture_text):
    """Why members' state comes from sysfs: --detail --export says ROLE=spare for a member md
    just marked faulty."""
    detail = parse_export(fixture_text("mdadm-detail-export-faulty.txt"))
    assert detail["MD_DEVICE_dev_loop1_ROLE"] == "spare"


def test_an_inactive_array_is_named_not_mistaken_for_raid0(monkeypatch):
    arr = md.Array("/dev/md/r5", "md127", {"MD_LEVEL": "raid0", "MD_DEVICES": "0"},
                   {"array_state": "inactive"})
    arr.members = [md.Member("loop1", "/dev/loop1", None, "", 0)]
    monkeypatch.setattr(md, "read_array", lambda runner, path: arr)
    spec = md.MdSpec(name="r5", state="present")
    with pytest.raises(Refusal, match="inactive with /dev/loop1"):
        md.plan_array(spec, None)
