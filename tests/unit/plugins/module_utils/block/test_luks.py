import hashlib
import json
import os
import stat
import tempfile

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.block import device, luks
from ansible_collections.blindvault.storage.plugins.module_utils.block.luks import (
    LuksSpec,
    State,
    format_argv,
    Key,
    mappings_of,
    parse_luks_dump,
    plan_volume,
)
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError, Result

DEV = "/dev/loop3"


class FakeRunner:
    """Answers ``cryptsetup open --test-passphrase`` from a set of known keys; records argv
    and stdin so tests can prove where secrets went."""

    def __init__(self, keys=(), check_mode=False, discards=False):
        self.keys = set(keys)
        self.check_mode = check_mode
        self.discards = discards
        self.calls = []

    def run(self, argv, changes=False, secret=None, data=None, check=True, timeout=None):
        self.calls.append((list(argv), secret))
        if argv[:3] == ["cryptsetup", "open", "--test-passphrase"]:
            path = argv[argv.index("--key-file") + 1]
            key = secret if path == "-" else open(path).read()
            return Result(argv, 0 if key in self.keys else 2, "", "")
        if argv[:2] == ["cryptsetup", "status"]:
            flags = "  flags:   discards\n" if self.discards else ""
            return Result(argv, 0, "  type:    LUKS2\n" + flags, "")
        raise AssertionError("unexpected command %r" % argv)


def spec(**kw):
    kw.setdefault("device", DEV)
    return LuksSpec(**kw)


@pytest.fixture
def dump(fixture_text):
    return parse_luks_dump(fixture_text("luks/luksdump-integrity.json"))


@pytest.fixture
def blkid(fixture_text):
    return device.Probe(DEV, device.parse_export(fixture_text("luks/blkid-luks.export")))


def luks_state(info, probe, opened=(), elsewhere=()):
    """The volume on DEV, its mappings in ``opened`` stacked on DEV in a fake sysfs; those in
    ``elsewhere`` carry the same LUKS UUID but sit on another device (a cloned disk)."""
    uuid = probe.fields["UUID"]
    info = luks.with_probe(info, probe)
    sysfs = tempfile.mkdtemp(prefix="bv-sysfs-")
    maps = {}
    for i, name in enumerate(list(opened) + list(elsewhere)):
        kname = "dm-%d" % i
        maps[name] = (kname, luks.dm_uuid_prefix(uuid) + name)
        below = os.path.basename(DEV) if name in opened else "loop9"
        os.makedirs(os.path.join(sysfs, kname, "slaves", below))
    return State(device=DEV, probe=probe, luks=info, uuid=uuid, mappings=maps, sysfs=sysfs)


def blank_state():
    return State(device=DEV, probe=device.Probe(DEV))


def actions(lp):
    return [s.action for s in lp.plan.steps]


# --- parser, against dumps recorded in the lab VM (tests/unit/fixtures/luks/record.sh) -------

def test_parse_recorded_integrity_dump(dump):
    assert dump.cipher == "aes-xts-plain64"
    assert dump.integrity == "hmac-sha256" and dump.integrity_raw == "hmac(sha256)"
    assert dump.sector_size == 4096
    assert dump.label is None  # in the binary header: blkid reads it (with_probe)
    assert [k.slot for k in dump.keyslots] == [0, 1]
    assert {k.pbkdf for k in dump.keyslots} == {"pbkdf2"}
    assert dump.key_size == 512  # 768 bits in the keyslot: 512 for XTS + 256 for the HMAC


def test_parse_recorded_plain_dump(fixture_text):
    info = parse_luks_dump(fixture_text("luks/luksdump-plain.json"))
    assert info.integrity == "none" and info.integrity_raw is None
    assert info.cipher == "aes-xts-plain64" and info.key_size == 512
    assert info.label is None and len(info.keyslots) == 1
    assert info.keyslots[0].pbkdf == "argon2id"


def test_parse_recorded_poly1305_dump(fixture_text):
    path = os.path.join(os.path.dirname(__file__), "../../../../unit/fixtures/luks/luksdump-poly1305.json")
    if not os.path.exists(os.path.normpath(path)):
        pytest.skip("poly1305 not recorded (kernel without chacha20-poly1305)")
    info = parse_luks_dump(fixture_text("luks/luksdump-poly1305.json"))
    assert info.integrity == "poly1305" and info.cipher == "chacha20-random"
    assert info.key_size == 256


def test_parse_refuses_garbage():
    with pytest.raises(Refusal, match="cannot parse"):
        parse_luks_dump("Device /dev/loop0 is not a valid LUKS device.")


def test_recorded_blkid_of_a_luks2_device(blkid, dump):
    assert blkid.type == "crypto_LUKS" and blkid.fields["VERSION"] == "2"
    assert luks.with_probe(dump, blkid).label == "bvdata"


def test_mappings_from_dm_uuids():
    uuid = "3f1c2a4e-8d63-4f7b-9d0e-5c2b8a1f6e90"
    maps = {"vault": ("dm-1", "CRYPT-LUKS2-3f1c2a4e8d634f7b9d0e5c2b8a1f6e90-vault"),
            "vault_dif": ("dm-0", "CRYPT-SUBDEV-3f1c2a4e8d634f7b9d0e5c2b8a1f6e90-vault_dif"),
            "other": ("dm-2", "CRYPT-LUKS2-00000000000000000000000000000000-other")}
    assert mappings_of(uuid, maps) == ["vault"]
    assert mappings_of(None, maps) == []


def test_dm_mappings_from_sysfs(tmp_path):
    for kname, name, uuid in (("dm-0", "v_dif", "CRYPT-SUBDEV-ab-v_dif"),
                              ("dm-1", "v", "CRYPT-LUKS2-ab-v")):
        (tmp_path / kname / "dm").mkdir(parents=True)
        (tmp_path / kname / "dm" / "name").write_text(name + "\n")
        (tmp_path / kname / "dm" / "uuid").write_text(uuid + "\n")
    (tmp_path / "loop0").mkdir()
    assert luks.dm_mappings(str(tmp_path)) == {"v_dif": ("dm-0", "CRYPT-SUBDEV-ab-v_dif"),
                                               "v": ("dm-1", "CRYPT-LUKS2-ab-v")}


# --- validation: refused before any state is read ---------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(integrity="hmac-sha256", allow_discards=True), "cannot pass discards"),
    (dict(integrity="poly1305", cipher="aes-xts-plain64"), "needs cipher chacha20-random"),
    (dict(integrity="hmac-sha256", cipher="chacha20-random"), "needs integrity poly1305"),
    (dict(cipher="aes-xts-random"), "random IVs"),
    (dict(cipher="aes-gcm-random", integrity="hmac-sha256"), "AEAD mode"),
    (dict(key_size=384), "XTS takes 256 or 512"),
    (dict(integrity="poly1305", key_size=512), "takes 256 bits"),
    (dict(pbkdf="pbkdf2", pbkdf_memory=65536), "argon2id only"),
    (dict(pbkdf="pbkdf2", pbkdf_iterations=10), "minimum"),
    (dict(pbkdf_iterations=4, iter_time=100), "mutually exclusive"),
    (dict(passphrase="a", key_file="/k"), "mutually exclusive"),
    (dict(state="opened"), "needs name"),
    (dict(name="a/b"), "not a valid device-mapper name"),
    (dict(add_keys=["x"], remove_keys=["x"]), "both add_keys and remove_keys"),
    (dict(passphrase="p", remove_keys=["p"]), "unlocks with"),
    (dict(header_backup="rel/h"), "absolute path"),
    (dict(label="x" * 48), "47 characters"),
    (dict(sector_size=8192), "sector_size"),
])
def test_spec_validation(kwargs, message):
    with pytest.raises(Refusal, match=message):
        spec(**kwargs)


def test_poly1305_pairs_with_chacha20_by_default():
    s = spec(integrity="poly1305", passphrase="p", wipe="none")
    argv = format_argv(s, Key(s))
    assert argv[argv.index("--cipher") + 1] == "chacha20-random"
    assert "--integrity-no-wipe" in argv


# --- planning --------------------------------------------------------------------------------

def test_format_blank_device_passphrase_on_stdin_never_argv():
    s = spec(name="v", state="opened", passphrase="s3cret-pass", integrity="hmac-sha256",
             sector_size=4096, pbkdf="pbkdf2", pbkdf_iterations=1000, label="bv", wipe="none")
    lp = plan_volume(FakeRunner(), s, blank_state())
    assert actions(lp) == ["format", "open"]
    fmt = lp.plan.steps[0]
    assert fmt.argv == ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
                        "--integrity", "hmac-sha256", "--integrity-no-wipe", "--sector-size", "4096",
                        "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--label", "bv",
                        "--key-file", "-", DEV]
    assert fmt.secret == "s3cret-pass" and lp.plan.steps[1].secret == "s3cret-pass"
    assert all("s3cret-pass" not in " ".join(st.argv) for st in lp.plan.steps)
    assert "s3cret-pass" not in repr(lp.plan.as_list())
    assert any("EIO" in w for w in lp.plan.warnings)
    assert lp.before == {"state": "absent"} and lp.after["opened"] == ["v"]


def test_full_wipe_has_no_warning():
    lp = plan_volume(FakeRunner(), spec(passphrase="p", integrity="hmac-sha256"), blank_state())
    assert "--integrity-no-wipe" not in lp.plan.steps[0].argv and not lp.plan.warnings


def test_default_pbkdf_is_argon2id():
    lp = plan_volume(FakeRunner(), spec(passphrase="p"), blank_state())
    argv = lp.plan.steps[0].argv
    assert argv[argv.index("--pbkdf") + 1] == "argon2id"


def test_format_refused_over_a_signature_unless_forced():
    st = State(device=DEV, probe=device.Probe(DEV, {"TYPE": "ext4", "UUID": "ab"}))
    with pytest.raises(Refusal, match="already has a ext4 signature"):
        plan_volume(FakeRunner(), spec(passphrase="p"), st)
    lp = plan_volume(FakeRunner(), spec(passphrase="p", force=True), st)
    assert actions(lp) == ["wipe-signatures", "format"] and "force" in lp.plan.steps[1].reason
    assert lp.plan.steps[0].argv == ["wipefs", "--all", DEV]


def test_format_refused_while_held():
    st = State(device=DEV, probe=device.Probe(DEV), holders=["dm-4"])
    with pytest.raises(Refusal, match="in use"):
        plan_volume(FakeRunner(), spec(passphrase="p", force=True), st)


def test_format_needs_a_key():
    with pytest.raises(Refusal, match="needs passphrase or key_file"):
        plan_volume(FakeRunner(), spec(), blank_state())


def test_existing_volume_matching_is_a_noop_without_any_key(dump, blkid):
    r = FakeRunner()
    lp = plan_volume(r, spec(integrity="hmac-sha256", sector_size=4096, label="bvdata",
                             cipher="aes-xts-plain64", key_size=512), luks_state(dump, blkid))
    assert actions(lp) == [] and lp.before == lp.after and r.calls == []
    assert lp.before["keyslots"] == 2 and lp.before["integrity"] == "hmac-sha256"


def test_mismatched_parameters_are_reported_never_reformatted(dump, blkid):
    with pytest.raises(Refusal) as exc:
        plan_volume(FakeRunner(), spec(passphrase="p", sector_size=512, cipher="serpent-xts-plain64"),
                    luks_state(dump, blkid))
    msg = str(exc.value)
    assert "already a LUKS2 volume" in msg and "never reformats" in msg
    assert "integrity is hmac-sha256, not none" in msg
    assert "sector_size is 4096, not 512" in msg and "cipher is aes-xts-plain64" in msg


def test_label_changed_in_place(dump, blkid):
    lp = plan_volume(FakeRunner(), spec(integrity="hmac-sha256", label="new"), luks_state(dump, blkid))
    assert [s.argv for s in lp.plan.steps] == [["cryptsetup", "config", "--label", "new", DEV]]
    assert lp.after["label"] == "new" and lp.before["label"] == "bvdata"


def test_add_and_remove_keys_idempotent(dump, blkid):
    st = luks_state(dump, blkid)
    r = FakeRunner(keys={"primary", "old"})
    s = spec(integrity="hmac-sha256", passphrase="primary", add_keys=["primary", "new"],
             remove_keys=["old", "gone"], pbkdf="pbkdf2", pbkdf_iterations=1000)
    lp = plan_volume(r, s, st)
    assert actions(lp) == ["add-key", "remove-key"]
    add, rm = lp.plan.steps
    assert add.argv[-1] == "<new key: 0600 file>" and add.secret == "primary"
    assert lp.new_keys == {0: "new"}
    assert rm.argv == ["cryptsetup", "luksRemoveKey", "--batch-mode", "--key-file", "-", DEV]
    assert rm.secret == "old" and lp.after["keyslots"] == 2
    assert all(secret not in " ".join(argv) for argv, _s in r.calls
               for secret in ("primary", "old", "new", "gone"))
    # second run: "new" unlocks, "old" does not
    r2 = FakeRunner(keys={"primary", "new"})
    assert actions(plan_volume(r2, s, st)) == []


def test_adding_keys_checks_the_unlocking_key_first(dump, blkid):
    with pytest.raises(Refusal, match="does not unlock any keyslot"):
        plan_volume(FakeRunner(keys=set()), spec(integrity="hmac-sha256", passphrase="wrong",
                                                 add_keys=["n"]), luks_state(dump, blkid))
    with pytest.raises(Refusal, match="needs an existing key"):
        plan_volume(FakeRunner(), spec(integrity="hmac-sha256", add_keys=["n"]),
                    luks_state(dump, blkid))


def test_removing_the_last_keyslots_is_refused(dump, blkid):
    with pytest.raises(Refusal, match="leave no keyslot"):
        plan_volume(FakeRunner(keys={"a", "b"}), spec(integrity="hmac-sha256", remove_keys=["a", "b"]),
                    luks_state(dump, blkid))


def test_remove_refused_when_it_is_the_key_files_key(tmp_path, dump, blkid):
    kf = tmp_path / "k"
    kf.write_text("mine")
    kf.chmod(0o600)
    with pytest.raises(Refusal, match="key_file"):
        plan_volume(FakeRunner(keys={"mine"}), spec(integrity="hmac-sha256", key_file=str(kf),
                                                    remove_keys=["mine"]), luks_state(dump, blkid))


def test_key_file_readable_by_others_warns_and_goes_to_argv_as_a_path(tmp_path, dump, blkid):
    kf = tmp_path / "k"
    kf.write_text("mine")
    kf.chmod(0o644)
    lp = plan_volume(FakeRunner(keys={"mine"}), spec(integrity="hmac-sha256", key_file=str(kf),
                                                     name="v", state="opened"),
                     luks_state(dump, blkid))
    assert any("readable by others" in w for w in lp.plan.warnings)
    assert lp.plan.steps[0].argv[-4:] == ["--key-file", str(kf), DEV, "v"]
    assert lp.plan.steps[0].secret is None


def test_open_with_wrong_key(dump, blkid):
    s = spec(integrity="hmac-sha256", passphrase="wrong", name="v", state="opened")
    # check mode: tested first, since nothing else would notice
    with pytest.raises(Refusal, match="does not unlock"):
        plan_volume(FakeRunner(keys={"right"}, check_mode=True), s, luks_state(dump, blkid))
    # before other changes: tested first, so the label is not changed before the open fails
    with pytest.raises(Refusal, match="does not unlock"):
        plan_volume(FakeRunner(keys={"right"}), spec(integrity="hmac-sha256", passphrase="wrong",
                                                     name="v", state="opened", label="new"),
                    luks_state(dump, blkid))
    # the open alone: no extra test (2 s in a small VM); the failing open says it clearly
    r = FakeRunner(keys={"right"})
    lp = plan_volume(r, s, luks_state(dump, blkid))
    assert actions(lp) == ["open"] and r.calls == []

    class Failing(FakeRunner):
        def run(self, argv, changes=False, secret=None, **kw):
            raise CommandError(argv, 2, "", "No key available with this passphrase.")

    with pytest.raises(Refusal, match="does not unlock any keyslot; nothing was opened"):
        luks.apply(Failing(), lp)


def test_opened_already_open_is_a_noop_and_closed_closes(dump, blkid):
    st = luks_state(dump, blkid, opened=["v"])
    assert actions(plan_volume(FakeRunner(), spec(integrity="hmac-sha256", name="v", state="opened"),
                               st)) == []
    lp = plan_volume(FakeRunner(), spec(integrity="hmac-sha256", name="v", state="closed"), st)
    assert [s.argv for s in lp.plan.steps] == [["cryptsetup", "close", "v"]]
    assert lp.before["opened"] == ["v"] and lp.after["opened"] == []


def test_open_under_a_second_name_refused(dump, blkid):
    st = luks_state(dump, blkid, opened=["v"])
    with pytest.raises(Refusal, match="already open as v"):
        plan_volume(FakeRunner(keys={"p"}), spec(integrity="hmac-sha256", name="w", state="opened",
                                                 passphrase="p"), st)


def test_name_taken_by_another_dm_device_refused(dump, blkid):
    st = luks_state(dump, blkid)
    st.mappings["v"] = ("dm-9", "LVM-xyz")
    with pytest.raises(Refusal, match="already exists and is not a mapping"):
        plan_volume(FakeRunner(), spec(integrity="hmac-sha256", name="v", state="closed"), st)


def test_allow_discards_on_open_plain_volume(fixture_text):
    info = parse_luks_dump(fixture_text("luks/luksdump-plain.json"))
    probe = device.Probe(DEV, {"TYPE": "crypto_LUKS", "VERSION": "2", "UUID": "ab-cd"})
    lp = plan_volume(FakeRunner(keys={"p"}), spec(name="v", state="opened", passphrase="p",
                                                  allow_discards=True), luks_state(info, probe))
    assert "--allow-discards" in lp.plan.steps[0].argv
    st = luks_state(info, probe, opened=["v"])
    lp = plan_volume(FakeRunner(keys={"p"}), spec(name="v", state="opened", passphrase="p",
                                                  allow_discards=True), st)
    assert actions(lp) == ["refresh"]
    lp = plan_volume(FakeRunner(keys={"p"}, discards=True),
                     spec(name="v", state="opened", passphrase="p", allow_discards=True), st)
    assert actions(lp) == []


def test_absent_refused_without_force(dump, blkid):
    with pytest.raises(Refusal, match="force: true"):
        plan_volume(FakeRunner(), spec(state="absent"), luks_state(dump, blkid))


def test_absent_with_force_closes_then_erases(dump, blkid, tmp_path):
    hb = str(tmp_path / "hdr")
    lp = plan_volume(FakeRunner(), spec(state="absent", force=True, header_backup=hb),
                     luks_state(dump, blkid, opened=["v"]))
    assert actions(lp) == ["header-backup", "close", "erase", "wipe-signatures"]
    assert lp.plan.steps[2].argv == ["cryptsetup", "erase", "--batch-mode", DEV]
    assert lp.after == {"state": "absent"}


def test_absent_on_other_data_is_a_noop():
    st = State(device=DEV, probe=device.Probe(DEV, {"TYPE": "ext4"}))
    assert actions(plan_volume(FakeRunner(), spec(state="absent", force=True), st)) == []


def test_luks1_refused(monkeypatch):
    monkeypatch.setattr(device, "probe", lambda runner, dev: device.Probe(
        dev, {"TYPE": "crypto_LUKS", "VERSION": "1"}))
    with pytest.raises(Refusal, match="LUKS2 only"):
        luks.read_state(FakeRunner(), DEV, sysfs="/nonexistent")


def test_header_backup_planned_when_missing_or_header_changes(tmp_path, dump, blkid):
    hb = str(tmp_path / "hdr")
    lp = plan_volume(FakeRunner(), spec(integrity="hmac-sha256", header_backup=hb),
                     luks_state(dump, blkid))
    assert actions(lp) == ["header-backup"] and lp.plan.steps[0].reason == "no backup yet"
    with open(hb, "w") as f:
        f.write("old")
    lp = plan_volume(FakeRunner(), spec(integrity="hmac-sha256", header_backup=hb, label="x"),
                     luks_state(dump, blkid))
    assert actions(lp) == ["set-label", "header-backup"]
    with pytest.raises(Refusal, match="does not exist"):
        plan_volume(FakeRunner(), spec(integrity="hmac-sha256", header_backup="/no/such/dir/h"),
                    luks_state(dump, blkid))


def fake_header(seqid, hdr_size=4096, keyslots=b"K" * 8192, uuid=None, label=b""):
    """A LUKS2-shaped area: magic, version 2, hdr_size, seqid, label, sha256 checksum, uuid;
    the primary and the secondary copy; keyslots."""
    def copy(magic):
        one = bytearray((magic + (2).to_bytes(2, "big") + hdr_size.to_bytes(8, "big")
                         + seqid.to_bytes(8, "big")).ljust(hdr_size, b"\0"))
        one[24:24 + len(label)] = label
        one[72:78] = b"sha256"
        if uuid:
            one[168:168 + len(uuid)] = uuid.encode()
        one[448:480] = hashlib.sha256(bytes(one)).digest()  # csum zeroed while hashing
        return bytes(one)
    return copy(b"LUKS\xba\xbe") + copy(b"SKUL\xba\xbe") + keyslots


def test_header_area_reads_both_metadata_copies(tmp_path):
    f = tmp_path / "h"
    f.write_bytes(fake_header(7))
    assert luks.header_area(str(f)) == fake_header(7)[:8192]
    f.write_bytes(b"\0" * 8192)
    assert luks.header_area(str(f)) is None


def test_recorded_json_size_gives_the_header_size(fixture_text):
    # config.json_size 12288 + 4096 binary header = hdr_size 16384 per copy
    config = json.loads(fixture_text("luks/luksdump-integrity.json"))["config"]
    assert int(config["json_size"]) + 4096 == 16384


def test_header_backup_compared_with_the_device(tmp_path, dump, blkid):
    disk = tmp_path / "disk"
    disk.write_bytes(fake_header(5, uuid=blkid.fields["UUID"]) + b"data" * 1024)
    hb = tmp_path / "hdr"
    hb.write_bytes(fake_header(5, uuid=blkid.fields["UUID"]))
    hb.chmod(0o644)
    s = spec(device=str(disk), integrity="hmac-sha256", header_backup=str(hb))
    assert actions(plan_volume(FakeRunner(), s, luks_state(dump, blkid))) == ["chmod-header-backup"]
    hb.chmod(0o600)
    assert actions(plan_volume(FakeRunner(), s, luks_state(dump, blkid))) == []
    disk.write_bytes(fake_header(6, uuid=blkid.fields["UUID"]) + b"data" * 1024)
    lp = plan_volume(FakeRunner(), s, luks_state(dump, blkid))
    assert actions(lp) == ["header-backup"] and "differs" in lp.plan.steps[0].reason


HDR = fake_header(9, hdr_size=16384)


def test_take_header_backup_writes_0600_atomically(tmp_path):
    class R:
        check_mode = False

        def run(self, argv, changes=False, **kw):
            out = argv[argv.index("--header-backup-file") + 1]
            assert stat.S_IMODE(os.stat(os.path.dirname(out)).st_mode) == 0o700
            with open(out, "wb") as f:
                f.write(HDR)
            os.chmod(out, 0o644)  # whatever cryptsetup leaves, the module sets 0600

    dest = tmp_path / "hdr"
    luks.take_header_backup(R(), DEV, str(dest))
    assert dest.read_bytes() == HDR and stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["hdr"]


def test_a_clone_with_the_same_uuid_on_another_device_is_not_ours(dump, blkid):
    st = luks_state(dump, blkid, elsewhere=["clone"])
    assert st.opened_as == []
    lp = plan_volume(FakeRunner(), spec(integrity="hmac-sha256", state="closed"), st)
    assert actions(lp) == []  # the clone's mapping is left alone


# --- a damaged header: never formatted over; restored from header_backup when asked ----------

BACKUP_UUID = "5f0e7a52-3c1b-4f7e-9d2a-0b6c2e1f9a11"


def backup_file(tmp_path, uuid=BACKUP_UUID, label=b"vault", name="vault.luks-header"):
    path = tmp_path / name
    path.write_bytes(fake_header(3, hdr_size=16384, uuid=uuid, label=label))
    path.chmod(0o600)
    return str(path)


class BackupRunner(FakeRunner):
    """FakeRunner that also dumps the header backup (the recorded integrity volume's JSON)."""

    def __init__(self, dump_text, **kw):
        super().__init__(**kw)
        self.dump_text = dump_text

    def run(self, argv, changes=False, secret=None, data=None, check=True, timeout=None):
        if argv[:2] == ["cryptsetup", "luksDump"]:
            self.calls.append((list(argv), secret))
            return Result(argv, 0, self.dump_text, "")
        return super().run(argv, changes, secret, data, check, timeout)


def test_no_header_but_a_backup_is_refused_even_with_force(tmp_path, fixture_text):
    hb = backup_file(tmp_path)
    for force in (False, True):
        with pytest.raises(Refusal, match="overwritten. Nothing was written.*restore_header: true"):
            plan_volume(BackupRunner(fixture_text("luks/luksdump-integrity.json"), keys=["pw"]),
                        spec(name="vault", state="opened", passphrase="pw", header_backup=hb,
                             integrity="hmac-sha256", force=force), blank_state())


def test_restore_header_tests_the_key_on_the_backup_then_restores_and_opens(tmp_path, fixture_text):
    hb = backup_file(tmp_path)
    runner = BackupRunner(fixture_text("luks/luksdump-integrity.json"), keys=["pw"])
    s = spec(name="vault", state="opened", passphrase="pw", header_backup=hb,
             integrity="hmac-sha256", restore_header=True)
    lp = plan_volume(runner, s, blank_state())
    assert actions(lp) == ["restore-header", "open"]  # the backup is the header: not rewritten
    assert lp.plan.steps[0].argv == ["cryptsetup", "luksHeaderRestore", "--batch-mode", DEV,
                                     "--header-backup-file", hb]
    tested = [argv for argv, _s in runner.calls if "--test-passphrase" in argv]
    assert tested and tested[0][-3:] == ["--header", hb, DEV]
    assert lp.before == {"state": "damaged", "uuid": BACKUP_UUID} and lp.after["label"] == "vault"
    with pytest.raises(Refusal, match="does not unlock any keyslot"):
        plan_volume(BackupRunner(fixture_text("luks/luksdump-integrity.json"), keys=["other"]),
                    s, blank_state())
    with pytest.raises(Refusal, match="other format parameters"):
        plan_volume(runner, spec(name="vault", state="opened", passphrase="pw", header_backup=hb,
                                 restore_header=True), blank_state())  # integrity none


def test_restore_header_refusals(tmp_path, fixture_text, blkid):
    hb = backup_file(tmp_path)
    runner = BackupRunner(fixture_text("luks/luksdump-integrity.json"), keys=["pw"])
    s = spec(name="vault", state="opened", passphrase="pw", header_backup=hb,
             integrity="hmac-sha256", restore_header=True)
    ext4 = State(device=DEV, probe=device.Probe(DEV, {"TYPE": "ext4"}))
    with pytest.raises(Refusal, match="not a damaged LUKS2 header"):
        plan_volume(runner, s, ext4)
    damaged = State(device=DEV, probe=blkid, uuid=blkid.fields["UUID"], damaged="luksDump failed")
    with pytest.raises(Refusal, match="names volume .* refusing to restore another volume"):
        plan_volume(runner, s, damaged)
    held = State(device=DEV, probe=device.Probe(DEV), holders=["md127"])
    with pytest.raises(Refusal, match="in use .*md127"):
        plan_volume(runner, s, held)
    with pytest.raises(Refusal, match="damaged LUKS2 header .*Nothing was written"):
        plan_volume(runner, spec(name="vault", state="opened", passphrase="pw"), damaged)
    with pytest.raises(Refusal, match="needs header_backup"):
        spec(restore_header=True)


def test_restore_needs_a_key_that_opens_the_backup_even_without_opening(tmp_path, fixture_text):
    hb = backup_file(tmp_path)
    dump = fixture_text("luks/luksdump-integrity.json")
    closed = dict(state="closed", header_backup=hb, integrity="hmac-sha256", restore_header=True)
    with pytest.raises(Refusal, match="needs passphrase or key_file"):
        plan_volume(BackupRunner(dump, keys=["pw"]), spec(**closed), blank_state())
    with pytest.raises(Refusal, match="does not unlock any keyslot; its header was not restored"):
        plan_volume(BackupRunner(dump, keys=["pw"]), spec(passphrase="nope", **closed), blank_state())
    lp = plan_volume(BackupRunner(dump, keys=["pw"]), spec(passphrase="pw", **closed), blank_state())
    assert actions(lp) == ["restore-header"]


def test_restore_refused_when_the_volume_is_open_on_another_device(tmp_path, fixture_text):
    hb = backup_file(tmp_path)
    st = blank_state()
    sysfs = tempfile.mkdtemp(prefix="bv-sysfs-")
    os.makedirs(os.path.join(sysfs, "dm-0", "slaves", "loop9"))
    st.mappings = {"vault": ("dm-0", luks.dm_uuid_prefix(BACKUP_UUID) + "vault")}
    st.sysfs = sysfs
    with pytest.raises(Refusal, match="present on the open mapping vault"):
        plan_volume(BackupRunner(fixture_text("luks/luksdump-integrity.json"), keys=["pw"]),
                    spec(name="vault", state="opened", passphrase="pw", header_backup=hb,
                         integrity="hmac-sha256", restore_header=True), st)


def test_restore_under_its_own_open_mapping_is_planned(tmp_path, fixture_text):
    """The usual accident: the volume is open (through its _dif mapping) when its header is
    overwritten; blkid then shows no UUID, and the mapping is ours once the backup names it."""
    hb = backup_file(tmp_path)
    st = blank_state()
    sysfs = tempfile.mkdtemp(prefix="bv-sysfs-")
    os.makedirs(os.path.join(sysfs, "dm-0", "slaves", os.path.basename(DEV)))  # vault_dif
    os.makedirs(os.path.join(sysfs, "dm-1", "slaves", "dm-0"))  # vault
    st.mappings = {"vault_dif": ("dm-0", "CRYPT-SUBDEV-x"),
                   "vault": ("dm-1", luks.dm_uuid_prefix(BACKUP_UUID) + "vault")}
    st.holders, st.sysfs = ["dm-0"], sysfs
    lp = plan_volume(BackupRunner(fixture_text("luks/luksdump-integrity.json"), keys=["pw"]),
                     spec(name="vault", state="opened", passphrase="pw", header_backup=hb,
                          integrity="hmac-sha256", restore_header=True), st)
    assert actions(lp) == ["restore-header"]  # and it stays open: no second open


def test_damaged_only_when_no_copy_checks_out(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    monkeypatch.setattr(device, "probe", lambda runner, dev: device.Probe(
        dev, {"TYPE": "crypto_LUKS", "VERSION": "2", "UUID": BACKUP_UUID}))

    class DumpFails(FakeRunner):
        def run(self, argv, **kw):
            return Result(argv, 1, "", "unknown option --dump-json-metadata")

    good = fake_header(4, hdr_size=16384, uuid=BACKUP_UUID)
    disk.write_bytes(good + b"\0" * 65536)
    with pytest.raises(Refusal, match="luksDump failed"):  # the header is fine: not damaged
        luks.read_state(DumpFails(), str(disk), sysfs="/nonexistent")
    disk.write_bytes(b"\0" * 16384 + good[16384:] + b"\0" * 65536)  # primary gone
    assert luks.valid_header_copies(str(disk)) == [16384]
    with pytest.raises(Refusal, match="luksDump failed"):
        luks.read_state(DumpFails(), str(disk), sysfs="/nonexistent")
    disk.write_bytes(os.urandom(65536) + b"\0" * 65536)  # both gone
    st = luks.read_state(DumpFails(), str(disk), sysfs="/nonexistent")
    assert st.luks is None and "luksDump failed" in st.damaged and st.uuid == BACKUP_UUID


def test_a_backup_of_another_volume_is_never_replaced(tmp_path, dump, blkid):
    hb = backup_file(tmp_path)  # BACKUP_UUID, not the recorded volume's
    with pytest.raises(Refusal, match="header of another LUKS2 volume"):
        plan_volume(FakeRunner(), spec(integrity="hmac-sha256", header_backup=hb, label="x"),
                    luks_state(dump, blkid))


def test_two_volumes_sharing_one_header_backup_path_are_refused(monkeypatch):
    monkeypatch.setattr(device, "require_block_device", lambda dev: dev)
    with pytest.raises(Refusal, match="header_backup is declared more than once"):
        luks.converge(FakeRunner(), [spec(device="/dev/null", header_backup="/root/h"),
                                     spec(device="/dev/zero", header_backup="/root//h")])


def test_absent_never_replaces_another_volumes_backup(tmp_path, dump, blkid):
    hb = backup_file(tmp_path)  # BACKUP_UUID, not the recorded volume's
    with pytest.raises(Refusal, match="header of another LUKS2 volume"):
        plan_volume(FakeRunner(), spec(state="absent", force=True, header_backup=hb,
                                       integrity="hmac-sha256"), luks_state(dump, blkid))


def test_restore_refused_over_a_copy_that_still_checks_out(tmp_path, fixture_text):
    disk = tmp_path / "disk"
    good = fake_header(4, hdr_size=16384, uuid=BACKUP_UUID)
    disk.write_bytes(b"\0" * 16384 + good[16384:] + b"\0" * 65536)  # blkid missed the secondary
    hb = backup_file(tmp_path)
    with pytest.raises(Refusal, match="still has a LUKS2 metadata copy that checks out"):
        plan_volume(BackupRunner(fixture_text("luks/luksdump-integrity.json"), keys=["pw"]),
                    spec(device=str(disk), name="vault", state="opened", passphrase="pw",
                         header_backup=hb, integrity="hmac-sha256", restore_header=True),
                    State(device=str(disk), probe=device.Probe(str(disk))))


def test_a_header_with_a_checksum_of_another_kind_is_never_called_damaged():
    area = bytearray(fake_header(1, hdr_size=16384))
    area[72:104] = b"nohash-9".ljust(32, b"\0")
    assert luks._copy_checks_out(bytes(area))  # cannot verify it: not damaged
    area[72:104] = b"sha1".ljust(32, b"\0")
    assert not luks._copy_checks_out(bytes(area))  # a sha1 that does not match


def test_reading_a_missing_device_is_a_refusal_naming_it(tmp_path):
    with pytest.raises(Refusal, match="cannot read the start of .*nothere"):
        luks.header_area(str(tmp_path / "nothere"))
