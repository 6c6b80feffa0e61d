# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""LUKS2 volumes (optionally with dm-integrity): read state, plan, apply.

State comes from one ``blkid -p`` of the device (block/device.py), one
``cryptsetup luksDump --dump-json-metadata`` when it is LUKS2 (keyslots, the data segment's
cipher and sector size, its integrity, the label) and sysfs for the device-mapper side (which
``CRYPT-LUKS2-<uuid>-<name>`` mappings exist). Which keys unlock which slot is asked with
``cryptsetup open --test-passphrase``, the key on stdin.

Key material reaches cryptsetup on stdin (``--key-file -``), as the user's own key file
(``--key-file PATH``) or, for the new key of ``luksAddKey`` (which takes it only as a file), as
a 0600 file in a 0700 directory removed right after (``Runner.secret_file``): never in argv.

An existing LUKS2 volume is never reformatted: parameters that differ from the requested ones
are reported. Only the label is changed in place (``cryptsetup config --label``).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field, replace

from ansible_collections.blindvault.storage.plugins.module_utils.block import device as blockdev
from ansible_collections.blindvault.storage.plugins.module_utils.plan import (
    Plan,
    Refusal,
    apply_all,
    refuse_duplicates,
)
from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError

STATES = ("present", "absent", "opened", "closed")
INTEGRITY = ("none", "hmac-sha256", "hmac-sha512", "poly1305")
PBKDFS = ("argon2id", "pbkdf2")
WIPES = ("full", "none")
SECTOR_SIZES = (512, 1024, 2048, 4096)

# How luksDump's JSON names an integrity algorithm -> our option value.
_DUMP_INTEGRITY = {"hmac(sha256)": "hmac-sha256", "hmac(sha512)": "hmac-sha512",
                   "poly1305": "poly1305"}
# Bits of the volume key that belong to the integrity algorithm (the keyslots store both).
INTEGRITY_KEY_BITS = {"none": 0, "hmac-sha256": 256, "hmac-sha512": 512, "poly1305": 0}
AEAD_CIPHER = "chacha20-random"
DEFAULT_CIPHER = "aes-xts-plain64"
SYSFS_BLOCK = blockdev.SYSFS_BLOCK
# cryptsetup open --test-passphrase: 2 = no key slot unlocked with this key.
RC_WRONG_KEY = 2

EIO_WARNING = ("%s: formatted with wipe: none (--integrity-no-wipe): the integrity tags of "
               "sectors never written are not initialised, so reading such a sector fails with "
               "an I/O error (EIO) until it has been written once; write the whole device (a "
               "filesystem or md sync, or dd) before reading it")


# ---------------------------------------------------------------------------------------------
# What is on the device

@dataclass(frozen=True)
class Keyslot:
    slot: int
    type: str = "luks2"
    key_size: int = 0  # bytes of the volume key, integrity key included
    pbkdf: str = ""


@dataclass(frozen=True)
class LuksInfo:
    """The parts of a ``luksDump --dump-json-metadata`` this module compares and reports."""

    keyslots: tuple = ()
    cipher: str = None
    sector_size: int = None
    integrity: str = "none"
    integrity_raw: str = None  # as luksDump names it, e.g. hmac(sha256)
    label: str = None
    subsystem: str = None
    segment_count: int = 0

    @property
    def key_size(self):
        """Bits of the encryption key proper (the integrity key taken off)."""
        if not self.keyslots:
            return None
        total = self.keyslots[0].key_size * 8
        return total - INTEGRITY_KEY_BITS.get(self.integrity, 0)


def parse_luks_dump(text):
    """Parse ``cryptsetup luksDump --dump-json-metadata``: keyslots, the first crypt segment.

    The label is not in the JSON (it is in the binary header): ``with_probe`` adds blkid's."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Refusal("cannot parse luksDump JSON metadata: %s" % exc) from None
    slots = []
    for key, ks in sorted((data.get("keyslots") or {}).items(), key=lambda kv: int(kv[0])):
        slots.append(Keyslot(slot=int(key), type=ks.get("type", ""),
                             key_size=int(ks.get("key_size") or 0),
                             pbkdf=(ks.get("kdf") or {}).get("type", "")))
    segments = data.get("segments") or {}
    crypt = None
    for key in sorted(segments, key=int):
        if segments[key].get("type") == "crypt":
            crypt = segments[key]
            break
    integrity_raw, integrity, cipher, sector = None, "none", None, None
    if crypt is not None:
        cipher = crypt.get("encryption")
        sector = int(crypt.get("sector_size") or 512)
        if crypt.get("integrity"):
            integrity_raw = crypt["integrity"].get("type")
            integrity = _DUMP_INTEGRITY.get(integrity_raw, integrity_raw)
    config = data.get("config") or {}
    return LuksInfo(keyslots=tuple(slots), cipher=cipher, sector_size=sector,
                    integrity=integrity, integrity_raw=integrity_raw,
                    label=config.get("label") or None, subsystem=config.get("subsystem") or None,
                    segment_count=len(segments))


def read_luks(runner, dev):
    res = runner.run(["cryptsetup", "luksDump", "--dump-json-metadata", dev], check=False)
    if res.rc != 0:
        raise Refusal("%s: blkid reports LUKS2 but cryptsetup luksDump failed: %s"
                      % (dev, (res.stderr or res.stdout).strip() or "rc=%d" % res.rc))
    return parse_luks_dump(res.stdout)


def with_probe(info, found):
    """The label lives in the LUKS2 binary header, not in the JSON metadata: blkid reads it."""
    if info.label is None and found.fields.get("LABEL"):
        return replace(info, label=found.fields["LABEL"])
    return info


def dm_uuid_prefix(luks_uuid):
    """dm-crypt names its LUKS2 mappings ``CRYPT-LUKS2-<uuid without dashes>-<name>``."""
    return "CRYPT-LUKS2-%s-" % luks_uuid.replace("-", "")


def dm_mappings(sysfs=SYSFS_BLOCK):
    """{dm name: (kernel name, dm uuid)} for every device-mapper device, from sysfs."""
    found = {}
    try:
        names = sorted(os.listdir(sysfs))
    except OSError:
        return found
    for kname in names:
        if not kname.startswith("dm-"):
            continue
        name = blockdev.read_text(os.path.join(sysfs, kname, "dm", "name"))
        if name:
            found[name] = (kname, blockdev.read_text(os.path.join(sysfs, kname, "dm", "uuid")) or "")
    return found


def mappings_of(luks_uuid, mappings):
    """Names of the open dm-crypt mappings of the LUKS2 volume with ``luks_uuid``."""
    if not luks_uuid:
        return []
    prefix = dm_uuid_prefix(luks_uuid)
    return sorted(name for name, (_k, uuid) in mappings.items() if uuid.startswith(prefix))


def _stacked_on(kname, below, sysfs, depth=0):
    """Whether kernel device ``kname`` sits on ``below``, directly or through other mappings
    (a LUKS2-integrity mapping sits on its ``_dif`` mapping, which sits on the device)."""
    if kname == below:
        return True
    if depth > 8:
        return False
    try:
        slaves = os.listdir(os.path.join(sysfs, kname, "slaves"))
    except OSError:
        return False
    return any(_stacked_on(slave, below, sysfs, depth + 1) for slave in slaves)


def discards_enabled(runner, name):
    """Whether the open mapping passes discards (``cryptsetup status``: ``flags: discards``)."""
    res = runner.run(["cryptsetup", "status", name], check=False)
    for line in res.stdout.splitlines():
        key, _sep, value = line.strip().partition(":")
        if key.strip() == "flags":
            return "discards" in value.split()
    return False


@dataclass
class State:
    device: str
    probe: object
    luks: LuksInfo = None
    uuid: str = None
    mappings: dict = field(default_factory=dict)  # all dm devices: name -> (kname, uuid)
    holders: list = field(default_factory=list)
    damaged: str = None  # blkid sees LUKS2, cryptsetup cannot read it: why

    @property
    def is_luks2(self):
        return self.luks is not None

    sysfs: str = SYSFS_BLOCK

    @property
    def opened_as(self):
        """Mappings of this volume's UUID that sit on this very device (a cloned disk or an
        image on a loop device carries the same UUID: its mappings are not ours)."""
        below = blockdev.kernel_name(self.device)
        return [name for name in mappings_of(self.uuid, self.mappings)
                if _stacked_on(self.mappings[name][0], below, self.sysfs)]


def read_state(runner, dev, sysfs=SYSFS_BLOCK):
    found = blockdev.probe(runner, dev)
    st = State(device=dev, probe=found, mappings=dm_mappings(sysfs),
               holders=blockdev.holders(dev, sysfs), sysfs=sysfs)
    if found.type == "crypto_LUKS":
        version = found.fields.get("VERSION", "2")
        if version != "2":
            raise Refusal("%s is a LUKS%s volume; this module manages LUKS2 only (convert it "
                          "with cryptsetup convert --type luks2 after a header backup)"
                          % (dev, version))
        st.uuid = found.fields.get("UUID")
        try:
            st.luks = with_probe(read_luks(runner, dev), found)
        except Refusal as exc:
            if valid_header_copies(dev):
                raise  # a header that checks out: the failure is cryptsetup's, not the disk's
            st.damaged = str(exc)  # no copy checks out: plan_volume decides (restore or refuse)
    return st


# ---------------------------------------------------------------------------------------------
# What is asked

@dataclass
class LuksSpec:
    device: str
    name: str = None
    state: str = "present"
    key_file: str = None
    passphrase: str = field(default=None, repr=False)
    cipher: str = None
    key_size: int = None
    integrity: str = "none"
    sector_size: int = None
    pbkdf: str = "argon2id"
    pbkdf_memory: int = None
    pbkdf_iterations: int = None
    iter_time: int = None
    label: str = None
    wipe: str = "full"
    add_keys: list = field(default_factory=list, repr=False)
    remove_keys: list = field(default_factory=list, repr=False)
    header_backup: str = None
    restore_header: bool = False
    allow_discards: bool = False
    force: bool = False

    def __post_init__(self):
        self.add_keys = list(self.add_keys or [])
        self.remove_keys = list(self.remove_keys or [])
        self.integrity = self.integrity or "none"
        self.pbkdf = self.pbkdf or "argon2id"
        self.wipe = self.wipe or "full"
        validate(self)

    @property
    def has_key(self):
        return self.passphrase is not None or self.key_file is not None

    @property
    def mapper(self):
        return "/dev/mapper/%s" % self.name if self.name else None


def validate(spec):
    """Every refusal that needs no state: bad combinations of options."""
    if spec.state not in STATES:
        raise Refusal("state must be one of %s, got %r" % (", ".join(STATES), spec.state))
    if spec.integrity not in INTEGRITY:
        raise Refusal("integrity must be one of %s, got %r" % (", ".join(INTEGRITY), spec.integrity))
    if spec.pbkdf not in PBKDFS:
        raise Refusal("pbkdf must be one of %s, got %r" % (", ".join(PBKDFS), spec.pbkdf))
    if spec.wipe not in WIPES:
        raise Refusal("wipe must be one of %s, got %r" % (", ".join(WIPES), spec.wipe))
    if spec.passphrase is not None and spec.key_file is not None:
        raise Refusal("passphrase and key_file are mutually exclusive")
    if spec.passphrase is not None and spec.passphrase == "":
        raise Refusal("passphrase must not be empty")
    blockdev.check_dm_name(spec.name)
    if spec.state == "opened" and not spec.name:
        raise Refusal("state opened needs name (the mapping's name under /dev/mapper)")
    if spec.allow_discards and spec.integrity != "none":
        raise Refusal("allow_discards cannot be used with integrity %s: dm-crypt cannot pass "
                      "discards through to a dm-integrity device" % spec.integrity)
    if spec.sector_size is not None and spec.sector_size not in SECTOR_SIZES:
        raise Refusal("sector_size must be one of %s" % ", ".join(map(str, SECTOR_SIZES)))
    cipher = spec.cipher
    if spec.integrity == "poly1305":
        if cipher not in (None, AEAD_CIPHER):
            raise Refusal("integrity poly1305 is an AEAD mode that needs cipher %s, not %s"
                          % (AEAD_CIPHER, cipher))
    elif cipher is not None:
        if cipher.startswith("chacha20") or "-random" in cipher and spec.integrity == "none":
            raise Refusal("cipher %s needs integrity%s (random IVs are stored in the integrity "
                          "tags)" % (cipher, " poly1305" if cipher.startswith("chacha20") else ""))
        if "gcm" in cipher or "ccm" in cipher:
            raise Refusal("cipher %s is an AEAD mode this module does not manage; use "
                          "integrity poly1305 with cipher %s" % (cipher, AEAD_CIPHER))
    if spec.key_size is not None:
        if spec.key_size <= 0 or spec.key_size % 8:
            raise Refusal("key_size must be a positive multiple of 8 bits, got %s" % spec.key_size)
        eff = effective_cipher(spec)
        if "xts" in eff and spec.key_size not in (256, 512):
            raise Refusal("key_size %d does not fit %s: XTS takes 256 or 512 bits"
                          % (spec.key_size, eff))
        if eff == AEAD_CIPHER and spec.key_size != 256:
            raise Refusal("key_size %d does not fit %s: it takes 256 bits" % (spec.key_size, eff))
    if spec.pbkdf == "pbkdf2" and spec.pbkdf_memory is not None:
        raise Refusal("pbkdf_memory applies to argon2id only, not pbkdf2")
    if spec.pbkdf_iterations is not None and spec.iter_time is not None:
        raise Refusal("pbkdf_iterations and iter_time are mutually exclusive (fixed cost or "
                      "benchmarked time)")
    if spec.pbkdf_iterations is not None and spec.pbkdf_iterations < (1000 if spec.pbkdf == "pbkdf2" else 4):
        raise Refusal("pbkdf_iterations is below cryptsetup's minimum for %s (%d)"
                      % (spec.pbkdf, 1000 if spec.pbkdf == "pbkdf2" else 4))
    for what in ("pbkdf_memory", "iter_time"):
        value = getattr(spec, what)
        if value is not None and value <= 0:
            raise Refusal("%s must be positive" % what)
    if spec.label is not None and len(spec.label) > 47:
        raise Refusal("label is longer than LUKS2's 47 characters")
    for what in ("add_keys", "remove_keys"):
        if any(not isinstance(k, str) or k == "" for k in getattr(spec, what)):
            raise Refusal("%s must be non-empty strings" % what)
    if set(spec.add_keys) & set(spec.remove_keys):
        raise Refusal("a key is listed in both add_keys and remove_keys")
    if spec.passphrase is not None and spec.passphrase in spec.remove_keys:
        raise Refusal("remove_keys lists the passphrase this task unlocks with; give another "
                      "key as passphrase or key_file to remove it")
    if spec.restore_header and not spec.header_backup:
        raise Refusal("restore_header needs header_backup (the backup to restore from)")
    if spec.restore_header and spec.state == "absent":
        raise Refusal("restore_header cannot be combined with state absent")
    if spec.header_backup is not None and not os.path.isabs(spec.header_backup):
        raise Refusal("header_backup must be an absolute path, got %r" % spec.header_backup)
    if spec.key_file is not None and not os.path.isabs(spec.key_file):
        raise Refusal("key_file must be an absolute path, got %r" % spec.key_file)


def effective_cipher(spec):
    if spec.cipher:
        return spec.cipher
    return AEAD_CIPHER if spec.integrity == "poly1305" else DEFAULT_CIPHER


# ---------------------------------------------------------------------------------------------
# Keys: how one reaches cryptsetup

class Key:
    """The unlocking key: ``--key-file -`` with the passphrase on stdin, or the user's file."""

    def __init__(self, spec):
        self.passphrase = spec.passphrase
        self.path = spec.key_file

    def args(self):
        return ["--key-file", "-" if self.passphrase is not None else self.path]

    @property
    def stdin(self):
        return self.passphrase


def unlocks(runner, dev, key_args, stdin, header=None):
    """Whether a key opens a keyslot of ``dev`` (``open --test-passphrase``; nothing changes).
    ``header``: test against this header file instead (a backup about to be restored)."""
    res = runner.run(["cryptsetup", "open", "--test-passphrase", "--batch-mode"] + key_args
                     + (["--header", header] if header else []) + [dev],
                     secret=stdin, check=False)
    if res.rc == 0:
        return True
    if res.rc == RC_WRONG_KEY:
        return False
    raise Refusal("%s: cryptsetup open --test-passphrase failed (rc=%d): %s"
                  % (dev, res.rc, (res.stderr or res.stdout).strip() or "no output"))


def wrong_key_message(spec, consequence):
    return "%s: the given %s does not unlock any keyslot; %s" % (
        spec.device, "passphrase" if spec.passphrase is not None else "key_file", consequence)


def _check_key_file(spec, plan):
    path = spec.key_file
    try:
        st = os.stat(path)
    except OSError as exc:
        raise Refusal("key_file %s: %s" % (path, exc.strerror)) from None
    if not stat.S_ISREG(st.st_mode):
        raise Refusal("key_file %s is not a regular file" % path)
    if st.st_size == 0:
        raise Refusal("key_file %s is empty" % path)
    if st.st_mode & 0o077:
        plan.warn("key_file %s is readable by others (mode %04o); it should be 0600 or 0400"
                  % (path, stat.S_IMODE(st.st_mode)))
    if spec.remove_keys:
        with open(path, "rb") as f:
            content = f.read()
        if content in [k.encode("utf-8") for k in spec.remove_keys]:
            raise Refusal("remove_keys lists the key in key_file %s, which this task unlocks "
                          "with; unlock with another key to remove it" % path)


# ---------------------------------------------------------------------------------------------
# Plan

class LuksPlan:
    def __init__(self, spec, state):
        self.spec = spec
        self.state = state
        self.plan = Plan()
        self.new_keys = {}  # step index -> new key (luksAddKey reads it from a 0600 file)
        self.before = view(state)
        self.after = dict(self.before)
        self.formatting = False
        self.key_checked = False  # the unlocking key was proven to open a keyslot
        self.header_from = None  # the header backup restored in this run (keys tested on it)


def view(state):
    """The before/after shape of the diff."""
    if state.luks is None:
        d = {"state": "absent"}
        if not state.probe.empty:
            d["signature"] = state.probe.describe()
        return d
    lk = state.luks
    return {"state": "present", "uuid": state.uuid, "cipher": lk.cipher, "key_size": lk.key_size,
            "integrity": lk.integrity, "sector_size": lk.sector_size, "label": lk.label,
            "keyslots": len(lk.keyslots), "opened": state.opened_as}


def format_argv(spec, key):
    argv = ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2"]
    if spec.cipher or spec.integrity == "poly1305":
        argv += ["--cipher", effective_cipher(spec)]
    if spec.key_size:
        argv += ["--key-size", str(spec.key_size)]
    if spec.integrity != "none":
        argv += ["--integrity", spec.integrity]
        if spec.wipe == "none":
            argv.append("--integrity-no-wipe")
    if spec.sector_size:
        argv += ["--sector-size", str(spec.sector_size)]
    argv += pbkdf_args(spec)
    if spec.label is not None:
        argv += ["--label", spec.label]
    return argv + key.args() + [spec.device]


def pbkdf_args(spec):
    argv = ["--pbkdf", spec.pbkdf]
    if spec.pbkdf_memory:
        argv += ["--pbkdf-memory", str(spec.pbkdf_memory)]
    if spec.pbkdf_iterations:
        argv += ["--pbkdf-force-iterations", str(spec.pbkdf_iterations)]
    if spec.iter_time:
        argv += ["--iter-time", str(spec.iter_time)]
    return argv


def mismatches(spec, lk):
    """Format parameters of an existing volume that differ from the requested ones."""
    found = []
    if spec.integrity != lk.integrity:
        found.append("integrity is %s, not %s" % (lk.integrity, spec.integrity))
    want = spec.cipher or (AEAD_CIPHER if spec.integrity == "poly1305" else None)
    if want and want != lk.cipher:
        found.append("cipher is %s, not %s" % (lk.cipher, want))
    if spec.key_size and lk.key_size is not None and spec.key_size != lk.key_size:
        found.append("key_size is %s bits, not %s" % (lk.key_size, spec.key_size))
    if spec.sector_size and spec.sector_size != lk.sector_size:
        found.append("sector_size is %s, not %s" % (lk.sector_size, spec.sector_size))
    return found


def plan_volume(runner, spec, state):
    """Decide what the spec needs on the device read as ``state``. Refusals before changes."""
    lp = LuksPlan(spec, state)
    plan = lp.plan
    dev = spec.device
    key = Key(spec)
    if spec.key_file is not None:
        _check_key_file(spec, plan)
    held = backup_header(spec.header_backup) if spec.state != "absent" and state.luks is None else None
    if spec.state != "absent" and (state.damaged or held is not None):
        _plan_restore(runner, lp, key, held)  # state.luks is the backup's from here on, or a refusal
    opened = state.opened_as
    if spec.name and spec.name in state.mappings and spec.name not in opened:
        raise Refusal("a device-mapper device named %s already exists and is not a mapping of "
                      "%s; choose another name" % (spec.name, dev))

    if spec.state == "absent":
        if state.damaged:
            raise Refusal("%s; nothing was erased (a header that cannot be read cannot be "
                          "erased by cryptsetup: wipe the device on purpose if it is to go)"
                          % state.damaged)
        return _plan_absent(lp, opened)

    # present / opened / closed: the volume must exist
    if state.luks is None:
        blockdev.refuse_unless_blank(state.probe, spec.force, "a LUKS2 volume")
        if state.holders:
            raise Refusal("%s is in use (held by %s); refusing to format it"
                          % (dev, ", ".join(state.holders)))
        if not spec.has_key:
            raise Refusal("%s is not a LUKS2 volume yet; formatting it needs passphrase or "
                          "key_file" % dev)
        lp.formatting = True
        reason = "blank device"
        if not state.probe.empty:
            # luksFormat overwrites the start of the device only: signatures elsewhere (md 1.0
            # and ZFS labels at the end) would survive and let other tools claim the device.
            plan.add("wipe-signatures", dev, "force: remove %s first" % state.probe.describe(),
                     ["wipefs", "--all", dev])
            reason = "force: formatting over %s" % state.probe.describe()
        plan.add("format", dev, reason, format_argv(spec, key), secret=key.stdin)
        if spec.integrity != "none" and spec.wipe == "none":
            plan.warn(EIO_WARNING % dev)
        lp.after = {"state": "present", "uuid": None, "cipher": effective_cipher(spec),
                    "key_size": spec.key_size, "integrity": spec.integrity,
                    "sector_size": spec.sector_size, "label": spec.label,
                    "keyslots": 1, "opened": []}
    else:
        lk = state.luks
        wrong = mismatches(spec, lk)
        if wrong:
            raise Refusal(
                "%s is already a LUKS2 volume with other format parameters: %s. This module "
                "never reformats an existing volume: change the options to match it, or erase "
                "it on purpose first (state: absent, force: true)" % (dev, "; ".join(wrong)))
        if spec.label is not None and spec.label != (lk.label or ""):
            plan.add("set-label", dev, "label %r -> %r" % (lk.label or "", spec.label),
                     ["cryptsetup", "config", "--label", spec.label, dev])
            lp.after["label"] = spec.label

    _plan_keys(runner, lp, key)
    _plan_mapping(runner, lp, key, opened)
    if spec.header_backup:
        _plan_header_backup(lp)
    return lp


def backup_header(path):
    """The LUKS2 header area held by the file ``path``, or None (no path, no file, no header)."""
    if not path or not os.path.isfile(path):
        return None
    return header_area(path)


def header_identity(area):
    """(uuid, label) from a LUKS2 binary header (at offsets 168 and 24, NUL-padded)."""
    def text(start, size):
        return area[start:start + size].split(b"\0", 1)[0].decode("ascii", "replace")
    return text(168, 40), text(24, 48) or None


def _plan_restore(runner, lp, key, area):
    """The device shows no readable LUKS2 header. Formatting it would destroy a volume whose
    header was damaged (a stray write over its first MiB): with a LUKS2 header in header_backup,
    restore it only when asked (restore_header) and only when the given key opens the backup
    and the volume is nowhere else; otherwise refuse, whatever force says."""
    spec, state, plan = lp.spec, lp.state, lp.plan
    dev, path = spec.device, spec.header_backup
    seen = "a damaged LUKS2 header (%s)" % state.damaged if state.damaged else \
        "no LUKS2 header (blkid: %s)" % state.probe.describe()
    if area is None:
        raise Refusal("%s has %s. Nothing was written. Restore its header from a backup "
                      "(header_backup with restore_header: true, or cryptsetup "
                      "luksHeaderRestore): without it the data cannot be read" % (dev, seen))
    uuid, label = header_identity(area)
    if not spec.restore_header:
        raise Refusal(
            "%s has %s, but header_backup %s holds the header of LUKS2 volume %s: this device's "
            "header was probably overwritten. Nothing was written (formatting would destroy the "
            "volume, force or not). Set restore_header: true to restore it from the backup, or "
            "move the backup away to format this device anew" % (dev, seen, path, uuid))
    if not state.damaged and not state.probe.empty:
        raise Refusal("restore_header: %s holds %s, not a damaged LUKS2 header; refusing to "
                      "write the header of %s over it" % (dev, state.probe.describe(), uuid))
    if not state.damaged and valid_header_copies(dev):  # blkid missed a header that checks out
        raise Refusal("restore_header: %s still has a LUKS2 metadata copy that checks out; "
                      "refusing to overwrite it (cryptsetup repair can rebuild the other copy)"
                      % dev)
    if state.damaged and state.uuid and state.uuid != uuid:
        raise Refusal("restore_header: the damaged header of %s still names volume %s, but "
                      "header_backup %s is of volume %s; refusing to restore another volume's "
                      "header" % (dev, state.uuid, path, uuid))
    if not spec.has_key:
        raise Refusal("restore_header needs passphrase or key_file: the key must open the "
                      "backup's keyslots before its header is written to %s" % dev)
    elsewhere = _volume_elsewhere(state, uuid)
    if elsewhere:
        raise Refusal("restore_header: volume %s is present on %s, not only on %s; refusing to "
                      "give two devices one volume's header (check device and header_backup)"
                      % (uuid, elsewhere, dev))
    state.uuid = uuid
    ours = [state.mappings[n][0] for n in state.opened_as]
    foreign = [h for h in state.holders
               if not any(_stacked_on(k, h, state.sysfs) for k in ours)]
    if foreign:
        raise Refusal("%s is in use (held by %s); refusing to restore its header"
                      % (dev, ", ".join(foreign)))
    info = read_luks(runner, path)
    state.luks = replace(info, label=info.label or label)
    if not unlocks(runner, dev, key.args(), key.stdin, path):
        raise Refusal(wrong_key_message(spec, "its header was not restored from %s" % path))
    lp.key_checked = True
    lp.header_from = path
    lp.before = {"state": "damaged", "uuid": uuid}
    lp.after = dict(view(state), state="present")
    plan.add("restore-header", dev, "restore_header: the header of %s from %s" % (uuid, path),
             ["cryptsetup", "luksHeaderRestore", "--batch-mode", dev, "--header-backup-file", path])


def _volume_elsewhere(state, uuid):
    """Where else the LUKS2 volume ``uuid`` shows: a /dev/disk/by-uuid link to another device,
    or an open mapping of it stacked on another device. None when nowhere."""
    link = "/dev/disk/by-uuid/%s" % uuid
    if os.path.exists(link) and os.path.realpath(link) != os.path.realpath(state.device):
        return os.path.realpath(link)
    below = blockdev.kernel_name(state.device)
    for name in mappings_of(uuid, state.mappings):
        if not _stacked_on(state.mappings[name][0], below, state.sysfs):
            return "the open mapping %s" % name
    return None


def _plan_absent(lp, opened):
    spec, state, plan = lp.spec, lp.state, lp.plan
    dev = spec.device
    if state.luks is None:
        if spec.name and spec.name in state.mappings:
            raise Refusal("%s is not a LUKS2 volume but a mapping named %s exists" % (dev, spec.name))
        return lp
    if not spec.force:
        raise Refusal(
            "%s holds a LUKS2 volume (UUID %s, %d keyslot(s)); state absent closes it and erases "
            "its header and keyslots, which makes all data on it unreadable for good. Set "
            "force: true to do that on purpose (and header_backup to keep a copy of the header)"
            % (dev, state.uuid, len(state.luks.keyslots)))
    if spec.header_backup:
        _plan_header_backup(lp, before_erase=True)
    for name in opened:
        plan.add("close", name, "mapping of %s" % dev, ["cryptsetup", "close", name])
    plan.add("erase", dev, "force: erase every keyslot", ["cryptsetup", "erase", "--batch-mode", dev])
    plan.add("wipe-signatures", dev, "remove the LUKS2 signature", ["wipefs", "--all", dev])
    lp.after = {"state": "absent"}
    return lp


def _plan_keys(runner, lp, key):
    spec, state, plan = lp.spec, lp.state, lp.plan
    dev = spec.device
    if not (spec.add_keys or spec.remove_keys):
        return
    slots = 1 if lp.formatting else len(state.luks.keyslots)
    primary_ok = lp.formatting
    to_add = []
    for new in spec.add_keys:
        if new == spec.passphrase:
            continue  # the unlocking key itself: present by definition once it unlocks
        if lp.formatting or not unlocks(runner, dev, ["--key-file", "-"], new, lp.header_from):
            to_add.append(new)
    if to_add:
        if not spec.has_key:
            raise Refusal("adding keys to %s needs an existing key as passphrase or key_file" % dev)
        if not primary_ok and not unlocks(runner, dev, key.args(), key.stdin, lp.header_from):
            raise Refusal("%s: the given %s does not unlock any keyslot; cannot add keys"
                          % (dev, "passphrase" if spec.passphrase is not None else "key_file"))
        lp.key_checked = True
    for new in to_add:
        argv = (["cryptsetup", "luksAddKey", "--batch-mode"] + pbkdf_args(spec) + key.args()
                + [dev, "<new key: 0600 file>"])
        plan.add("add-key", dev, "a key in add_keys unlocks no keyslot", argv, secret=key.stdin)
        lp.new_keys[len(plan.steps) - 1] = new
        slots += 1
    removing = 0
    if not lp.formatting:
        for old in spec.remove_keys:
            if unlocks(runner, dev, ["--key-file", "-"], old, lp.header_from):
                plan.add("remove-key", dev, "a key in remove_keys unlocks a keyslot",
                         ["cryptsetup", "luksRemoveKey", "--batch-mode", "--key-file", "-", dev],
                         secret=old)
                removing += 1
    if removing and slots - removing < 1:
        raise Refusal("%s: removing these keys would leave no keyslot, and the data would be "
                      "lost; add another key first" % dev)
    lp.after["keyslots"] = slots - removing


def _plan_mapping(runner, lp, key, opened):
    spec, plan = lp.spec, lp.plan
    dev = spec.device
    if spec.state == "opened":
        others = [n for n in opened if n != spec.name]
        if spec.name in opened:
            if others:
                plan.warn("%s is also open as %s" % (dev, ", ".join(others)))
            if spec.allow_discards and not discards_enabled(runner, spec.name):
                if not spec.has_key:
                    raise Refusal("%s is open without discards; enabling them live (cryptsetup "
                                  "refresh) needs passphrase or key_file" % spec.name)
                plan.add("refresh", spec.name, "allow_discards on an open mapping",
                         ["cryptsetup", "refresh", "--allow-discards", "--batch-mode"]
                         + key.args() + [spec.name], secret=key.stdin)
            return
        if others:
            raise Refusal("%s is already open as %s; close it first or use that name"
                          % (dev, ", ".join(others)))
        if not spec.has_key:
            raise Refusal("opening %s needs passphrase or key_file" % dev)
        # A wrong key makes cryptsetup open fail without changing anything (apply says so
        # clearly); test it first (~2 s in a small VM) only when earlier steps would change the
        # volume before the open fails, or in check mode, where nothing else would notice.
        must_check = bool(plan.steps) or runner.check_mode
        if must_check and not (lp.formatting or lp.key_checked) and \
                not unlocks(runner, dev, key.args(), key.stdin, lp.header_from):
            raise Refusal(wrong_key_message(spec, "cannot open it"))
        argv = ["cryptsetup", "open", "--type", "luks2", "--batch-mode"]
        if spec.allow_discards:
            argv.append("--allow-discards")
        plan.add("open", spec.name, "state opened", argv + key.args() + [dev, spec.name],
                 secret=key.stdin)
        lp.after["opened"] = [spec.name]
    elif spec.state == "closed":
        names = [spec.name] if spec.name else opened
        for name in names:
            if name in opened:
                plan.add("close", name, "state closed", ["cryptsetup", "close", name])
        lp.after["opened"] = [n for n in opened if n not in names]


LUKS2_MAGIC = b"LUKS\xba\xbe"
_ALIGN = 4096


def _read_start(path, size):
    """The first ``size`` bytes of a device or file, with O_DIRECT where it works (the header
    cryptsetup just wrote, not a stale page cache)."""
    want = (size + _ALIGN - 1) // _ALIGN * _ALIGN
    buf = mmap.mmap(-1, want)  # page aligned, as O_DIRECT wants
    for flags in (os.O_RDONLY | getattr(os, "O_DIRECT", 0), os.O_RDONLY):
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            error = exc
            continue
        try:
            got = os.preadv(fd, [buf], 0)
            return bytes(buf[:min(got, size)])
        except OSError as exc:  # O_DIRECT refused (tmpfs), or a read error
            error = exc
        finally:
            os.close(fd)
    raise Refusal("cannot read the start of %s: %s" % (path, error.strerror or error))


def header_area(path):
    """Both LUKS2 metadata copies (binary header + JSON, twice) at the start of ``path``, or None
    when it does not start with a LUKS2 header. Every metadata change (keyslots, label...)
    rewrites them with a new sequence id, so equal areas mean equal headers."""
    head = _read_start(path, _ALIGN)
    if len(head) < 16 or head[:6] != LUKS2_MAGIC or int.from_bytes(head[6:8], "big") != 2:
        return None
    hdr_size = int.from_bytes(head[8:16], "big")
    if not 4096 <= hdr_size <= 4 << 20:
        return None
    return _read_start(path, 2 * hdr_size)


SECONDARY_MAGIC = b"SKUL\xba\xbe"
# where LUKS2 puts the second metadata copy: right after the first, whose size is one of these
_HDR_SIZES = tuple(16384 << i for i in range(9))  # 16 KiB .. 4 MiB


def _copy_checks_out(area):
    """Whether ``area`` starts with a LUKS2 binary header whose sha256 (over hdr_size bytes,
    its csum field zeroed) matches the one it carries."""
    if len(area) < 512 or area[:6] not in (LUKS2_MAGIC, SECONDARY_MAGIC):
        return False
    hdr_size = int.from_bytes(area[8:16], "big")
    if hdr_size not in _HDR_SIZES or len(area) < hdr_size:
        return False
    alg = area[72:104].split(b"\0", 1)[0].decode("ascii", "replace")
    try:
        digest = hashlib.new(alg)
    except ValueError:
        return True  # a checksum this Python cannot compute: never call such a header damaged
    digest.update(area[:448] + b"\0" * 64 + area[512:hdr_size])
    return digest.digest() == area[448:448 + digest.digest_size]


def valid_header_copies(path):
    """Offsets of the LUKS2 metadata copies at the start of ``path`` that check out (the
    primary at 0, the secondary at one of the sizes a primary can have)."""
    data = _read_start(path, 2 * _HDR_SIZES[-1])
    return [off for off in (0,) + _HDR_SIZES if _copy_checks_out(data[off:])]


def _plan_header_backup(lp, before_erase=False):
    spec, plan = lp.spec, lp.plan
    path = spec.header_backup
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise Refusal("header_backup: directory %s does not exist" % parent)
    exists = os.path.lexists(path)
    if exists and not os.path.isfile(path):
        raise Refusal("header_backup %s exists and is not a regular file" % path)
    argv = ["cryptsetup", "luksHeaderBackup", "--batch-mode", spec.device,
            "--header-backup-file", path]
    if before_erase:
        _refuse_foreign_backup(lp, path)
        plan.add("header-backup", path, "keep the header before it is erased", argv)
        return
    header_changes = any(s.action in ("format", "set-label", "add-key", "remove-key")
                         for s in plan.steps)
    if header_changes:
        if not lp.formatting:
            _refuse_foreign_backup(lp, path)
        plan.add("header-backup", path, "the header changes in this run", argv)
        return
    if not exists:
        plan.add("header-backup", path, "no backup yet", argv)
        return
    # restored from this very backup in this run: the device's header will equal it
    if lp.header_from != path:
        current = header_area(spec.device)
        if current is None or current != header_area(path):
            _refuse_foreign_backup(lp, path)
            plan.add("header-backup", path, "the backup differs from the device's header", argv)
            return
    if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
        plan.add("chmod-header-backup", path, "mode 0600")


def _refuse_foreign_backup(lp, path):
    """A backup is replaced by the same volume's newer header only: one of another volume at
    that path (a shared or mistyped header_backup) is somebody's only way back."""
    held = backup_header(path)
    if held is None or lp.state.uuid is None:
        return
    uuid, _label = header_identity(held)
    if uuid != lp.state.uuid:
        raise Refusal("header_backup %s holds the header of another LUKS2 volume (%s, not %s); "
                      "refusing to replace it: give this volume its own header_backup path"
                      % (path, uuid, lp.state.uuid))


def take_header_backup(runner, dev, path):
    """Write the header of ``dev`` to ``path`` 0600 (atomically: a 0700 directory next to it,
    then rename)."""
    tmpdir = tempfile.mkdtemp(prefix=".blindvault-hdr-", dir=os.path.dirname(path))
    try:
        tmp = os.path.join(tmpdir, "header")
        runner.run(["cryptsetup", "luksHeaderBackup", "--batch-mode", dev,
                    "--header-backup-file", tmp], changes=True)
        os.chmod(tmp, 0o600)
        if not valid_header_copies(tmp):  # never replace a good backup with a bad one
            raise Refusal("the header backup just taken of %s does not check out; %s was kept "
                          "as it was" % (dev, path))
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Apply and report

def apply(runner, lp):
    spec = lp.spec
    for index, step in enumerate(lp.plan.steps):
        if step.action == "header-backup":
            take_header_backup(runner, spec.device, step.obj)
        elif step.action == "chmod-header-backup":
            os.chmod(step.obj, 0o600)
        elif step.action == "add-key":
            with runner.secret_file(lp.new_keys[index]) as new_key_path:
                argv = step.argv[:-1] + [new_key_path]
                runner.run(argv, changes=True, secret=step.secret)
        elif step.action == "open":
            try:
                runner.run(step.argv, changes=True, secret=step.secret)
            except CommandError as exc:
                if exc.rc == RC_WRONG_KEY:
                    raise Refusal(wrong_key_message(spec, "nothing was opened")) from None
                raise
            blockdev.settle(runner)
        else:
            runner.run(step.argv, changes=True, secret=step.secret)
            if step.action in ("format", "wipe-signatures", "close", "erase", "restore-header"):
                # udev probes the rewritten device (and removes closed nodes): let it finish
                # before the next step opens it
                blockdev.settle(runner)


def converge(runner, specs, sysfs=SYSFS_BLOCK):
    """Converge one LuksSpec or a list of them: every volume read and planned (so validated)
    before the first change, then applied in order. Returns one result (or a list)."""
    single = isinstance(specs, LuksSpec)
    specs = [specs] if single else list(specs)
    for spec in specs:
        spec.device = blockdev.require_block_device(spec.device)
    for key in ("device", "name"):
        refuse_duplicates([getattr(s, key) for s in specs], key)
    refuse_duplicates([os.path.realpath(s.header_backup) for s in specs if s.header_backup],
                      "header_backup")
    plans = [plan_volume(runner, spec, read_state(runner, spec.device, sysfs)) for spec in specs]
    if not runner.check_mode:
        apply_all([lp for lp in plans if lp.plan.steps], lambda lp: apply(runner, lp),
                  lambda lp: lp.spec.device)
    results = []
    for lp in plans:
        if lp.plan.steps and not runner.check_mode:
            after = read_state(runner, lp.spec.device, sysfs)
            lp.after = view(after)
            results.append(report(lp, after))
        else:
            results.append(report(lp, None))
    return results[0] if single else results


def report(lp, after):
    spec = lp.spec
    view_after = lp.after
    res = {
        "changed": lp.plan.changed,
        "device": spec.device,
        "name": spec.name,
        "mapper": spec.mapper,
        "actions": lp.plan.as_list(),
        "warnings": list(lp.plan.warnings),
        "diff": {"before": lp.before, "after": view_after},
    }
    if after is not None:
        lk = after.luks
        res.update(opened=bool(spec.name) and spec.name in after.opened_as,
                   opened_as=after.opened_as, uuid=after.uuid,
                   cipher=lk.cipher if lk else None, key_size=lk.key_size if lk else None,
                   integrity=lk.integrity if lk else None,
                   sector_size=lk.sector_size if lk else None,
                   label=lk.label if lk else None,
                   keyslots=len(lk.keyslots) if lk else 0)
    else:
        present = view_after.get("state") == "present"
        opened_as = view_after.get("opened", [])
        res.update(opened=bool(spec.name) and spec.name in opened_as, opened_as=opened_as,
                   uuid=view_after.get("uuid"), cipher=view_after.get("cipher"),
                   key_size=view_after.get("key_size"),
                   integrity=view_after.get("integrity") if present else None,
                   sector_size=view_after.get("sector_size"), label=view_after.get("label"),
                   keyslots=view_after.get("keyslots", 0))
    return res
