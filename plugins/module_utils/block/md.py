# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""md RAID arrays: read state, plan, apply.

State is read with as few processes as possible:

* a running array: one ``mdadm --detail --export /dev/md/NAME`` (UUID, name, level) plus
  sysfs reads under ``/sys/block/mdX/md/`` (no process): array_state, degraded, sync_action,
  mismatch_cnt, and per member ``dev-*/{state,errors,slot,block}``;
* an array that is not running: ``blkid -p -o export`` of each requested member (the md
  superblock's array UUID and ``homehost:name`` label) to decide between assembling what is
  there, creating over blank devices, or refusing to create over anything else.

md by itself cannot tell which copy of a block is right: RAID5 over plain devices returns
silently corrupted data and a ``check`` only counts mismatches. That is why the collection
stacks md on dm-integrity members (a corrupted block then reads as an error and md rewrites it
from parity); ``readd_failed`` brings back members md kicked after such read errors.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.blindvault.storage.plugins.module_utils.block import device as blockdev
from ansible_collections.blindvault.storage.plugins.module_utils.block.loop import parse_size
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Plan, Refusal

LEVELS = (1, 5, 6, 10)
STATES = ("present", "absent", "assembled", "stopped")
SYNC_ACTIONS = ("check", "repair", "idle")
METADATA = ("0.90", "1.0", "1.1", "1.2")
BITMAPS = ("internal", "none")
# Fewest members mdadm builds each level from without running degraded from the start.
MIN_DEVICES = {1: 2, 5: 3, 6: 4, 10: 2}

DEV_MD = "/dev/md"
SYSFS_BLOCK = "/sys/block"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


# ---------------------------------------------------------------------------------------------
# Parsers (pure, unit-tested against recorded output)

# ``KEY=value`` lines of ``mdadm --detail/--examine --export``: the same shape as blkid's
parse_export = blockdev.parse_export


def md_level_number(level):
    """``raid5`` -> 5 (None for anything else, e.g. ``linear``, ``container``)."""
    m = re.match(r"^raid(\d+)$", str(level or ""))
    return int(m.group(1)) if m else None


def label_name(label):
    """The array name of an md superblock's ``homehost:name`` (blkid LABEL, MD_NAME)."""
    if not label:
        return None
    return label.rpartition(":")[2]


def chunk_kib(value):
    """``64K``/``512K``/``1M`` -> KiB as mdadm --chunk takes it; a bare number is KiB, as for
    mdadm (``512`` = 512K)."""
    text = str(value).strip()
    size = parse_size(text + "K" if text.isdigit() else text)
    if size % 4096 or size & (size - 1):
        raise Refusal("chunk %r must be a power of two of at least 4K (e.g. 64K, 512K)" % (value,))
    return size // 1024


# ---------------------------------------------------------------------------------------------
# The request

class MdSpec:
    """One declared array, validated without touching the system (devices are checked to be
    block devices: a stat each)."""

    def __init__(self, name, level=None, devices=None, spares=None, state="present",
                 metadata="1.2", chunk=None, bitmap=None, assume_clean=False, action=None,
                 wait=False, wait_timeout=3600, readd_failed=False, force=False):
        if not name or not _NAME_RE.match(str(name)):
            raise Refusal("name %r is not an md array name: use letters, digits, '_', '.', '-' "
                          "(at most 32; the array is /dev/md/NAME)" % (name,))
        if state not in STATES:
            raise Refusal("state must be one of %s, got %r" % (", ".join(STATES), state))
        if level is not None:
            text = str(level).lower().replace("raid", "")
            level = int(text) if text.isdigit() else level
            if level not in LEVELS:
                raise Refusal("level must be one of %s, got %r"
                              % (", ".join(str(lv) for lv in LEVELS), level))
        if metadata not in METADATA:
            raise Refusal("metadata must be one of %s, got %r" % (", ".join(METADATA), metadata))
        if bitmap is not None and bitmap not in BITMAPS:
            raise Refusal("bitmap must be internal or none, got %r" % (bitmap,))
        if action is not None and action not in SYNC_ACTIONS:
            raise Refusal("action must be one of %s, got %r" % (", ".join(SYNC_ACTIONS), action))
        self.name = name
        self.level = level
        self.state = state
        self.metadata = metadata
        self.bitmap = bitmap
        self.assume_clean = bool(assume_clean)
        self.action = action
        self.wait = bool(wait)
        self.wait_timeout = wait_timeout
        self.readd_failed = bool(readd_failed)
        self.force = bool(force)
        self.chunk = None
        if chunk is not None:
            if level == 1:
                raise Refusal("chunk does not apply to RAID1 (mirrors have no stripes)")
            self.chunk = chunk_kib(chunk)
        if wait_timeout is not None and wait_timeout <= 0:
            raise Refusal("wait_timeout must be a positive number of seconds")
        if state in ("absent", "stopped") and (action or readd_failed):
            raise Refusal("action and readd_failed need a running array, not state %s" % state)

        self.devices = self._paths(devices or [], "devices")
        self.spares = self._paths(spares or [], "spares")
        both = self.devices + self.spares
        seen, dupes = {}, []
        for given, real in both:
            if real in seen:
                dupes.append("%s (= %s)" % (given, seen[real]) if given != seen[real] else given)
            seen.setdefault(real, given)
        if dupes:
            raise Refusal("a device is listed more than once in devices/spares: %s"
                          % ", ".join(dupes))
        if level is not None and self.devices and len(self.devices) < MIN_DEVICES[level]:
            raise Refusal("RAID%d needs at least %d devices, got %d (%s)" % (
                level, MIN_DEVICES[level], len(self.devices),
                ", ".join(g for g, _r in self.devices)))
        if self.spares and not self.devices:
            raise Refusal("spares need devices (the array's active members) as well")
        if level is not None and not self.devices and state in ("present",):
            raise Refusal("level is given but devices are not: list the array's members")

    @staticmethod
    def _paths(paths, what):
        out = []
        for p in paths:
            if not p or not os.path.isabs(p):
                raise Refusal("%s: %r is not an absolute device path" % (what, p))
            out.append((p, blockdev.require_block_device(p, "%s entry" % what)))
        return out

    @property
    def path(self):
        return os.path.join(DEV_MD, self.name)

    @property
    def real_devices(self):
        return [r for _g, r in self.devices]

    @property
    def real_spares(self):
        return [r for _g, r in self.spares]


# ---------------------------------------------------------------------------------------------
# Reading the kernel's view

def _member_path(kname):
    """``/dev/mapper/NAME`` for a device-mapper member (what a play declares), else /dev/KNAME."""
    name = blockdev.dm_name(kname) if kname.startswith("dm-") else None
    return "/dev/mapper/" + name if name else "/dev/" + kname


class Member:
    """One member of a running array, from ``/sys/block/mdX/md/dev-KNAME/``."""

    __slots__ = ("kname", "device", "slot", "state", "errors")

    def __init__(self, kname, device, slot, state, errors):
        self.kname = kname
        self.device = device
        self.slot = slot
        self.state = state
        self.errors = errors

    @property
    def flags(self):
        return set(self.state.split(",")) if self.state else set()

    @property
    def faulty(self):
        return "faulty" in self.flags

    @property
    def spare(self):
        return self.slot is None and not self.faulty

    def as_dict(self):
        return {"device": self.device, "kernel_name": self.kname, "slot": self.slot,
                "state": self.state, "errors": self.errors}


class Array:
    """A running array: ``detail`` from mdadm, the rest from sysfs."""

    def __init__(self, path, kname, detail, sysfs):
        self.path = path
        self.kname = kname
        self.detail = detail
        self.sysfs = sysfs  # dict of md/ attributes
        self.members = []

    @property
    def level(self):
        return md_level_number(self.detail.get("MD_LEVEL") or self.sysfs.get("level"))

    @property
    def raid_disks(self):
        value = self.sysfs.get("raid_disks") or self.detail.get("MD_DEVICES")
        # "4 (3)" while a reshape runs: the first number is the new count
        return int(value.split()[0]) if value not in (None, "") else None

    @property
    def uuid(self):
        return self.detail.get("MD_UUID")

    @property
    def chunk(self):
        value = self.sysfs.get("chunk_size")
        return int(value) // 1024 if value and value.isdigit() and int(value) else None

    @property
    def bitmap(self):
        loc = self.sysfs.get("bitmap/location")
        if loc is None:
            return None
        return "none" if loc == "none" else "internal" if loc.startswith(("+", "-")) else loc

    @property
    def degraded(self):
        value = self.sysfs.get("degraded")
        return bool(int(value)) if value and value.isdigit() else None

    @property
    def sync_action(self):
        return self.sysfs.get("sync_action")

    @property
    def mismatch_cnt(self):
        value = self.sysfs.get("mismatch_cnt")
        return int(value) if value and value.isdigit() else None

    @property
    def array_state(self):
        return self.sysfs.get("array_state")

    def member(self, real):
        k = os.path.basename(real)
        for m in self.members:
            if m.kname == k:
                return m
        return None


SYSFS_ATTRS = ("array_state", "level", "raid_disks", "chunk_size", "degraded", "sync_action",
               "mismatch_cnt", "metadata_version", "bitmap/location", "sync_completed")


def read_sysfs(kname, sysfs=SYSFS_BLOCK):
    """The md/ attributes and members of kernel device ``kname`` (no process)."""
    base = os.path.join(sysfs, kname, "md")
    attrs = {}
    for attr in SYSFS_ATTRS:
        value = blockdev.read_text(os.path.join(base, attr))
        if value is not None:
            attrs[attr] = value
    members = []
    try:
        entries = sorted(e for e in os.listdir(base) if e.startswith("dev-"))
    except OSError:
        entries = []
    for entry in entries:
        d = os.path.join(base, entry)
        kn = entry[4:]
        slot = blockdev.read_text(os.path.join(d, "slot"))
        errors = blockdev.read_text(os.path.join(d, "errors"))
        members.append(Member(
            kname=kn,
            device=_member_path(kn),
            slot=int(slot) if slot and slot.isdigit() else None,
            state=blockdev.read_text(os.path.join(d, "state")) or "",
            errors=int(errors) if errors and errors.isdigit() else None))
    return attrs, members


def running_kname(path):
    """``md127`` when /dev/md/NAME exists and is a running md device, else None."""
    if not os.path.exists(path):
        return None
    kn = os.path.basename(os.path.realpath(path))
    return kn if kn.startswith("md") else None


def read_array(runner, path, sysfs=SYSFS_BLOCK):
    """The running array at ``path`` or None (one mdadm process when it runs, none otherwise)."""
    kname = running_kname(path)
    if kname is None:
        return None
    attrs, members = read_sysfs(kname, sysfs)
    if attrs.get("array_state") in (None, "clear", "inactive") and not members:
        return None
    res = runner.run(["mdadm", "--detail", "--export", path], check=False)
    detail = parse_export(res.stdout) if res.rc == 0 else {}
    arr = Array(path, kname, detail, attrs)
    arr.members = members
    return arr


def probe_members(runner, devices):
    """Signatures on every device, {real device: blkid fields} (one ``blkid -p`` each).

    Not one ``blkid -p`` for all of them: blkid stops at the first device that carries no
    signature, so an ext4 on a later device went unseen (caught in the lab)."""
    return {d: dict(blockdev.probe(runner, d).fields) for d in devices}


# ---------------------------------------------------------------------------------------------
# Planning

class MdPlan:
    def __init__(self, spec, runner):
        self.spec = spec
        self.runner = runner
        self.plan = Plan()
        self.array = None
        self.probes = {}
        self.before = {"state": "absent"}
        self.after = {"state": "absent"}
        self.readd = []  # real devices to bring back
        self.zero = []  # real devices whose superblock gets zeroed
        self.wait = False
        self.readwrite = False  # an auto-read-only array was switched to read-write to recover


def _view(state, level=None, devices=None, spares=None, bitmap=None, sync_action=None):
    d = {"state": state}
    if level is not None:
        d["level"] = level
    if devices is not None:
        d["devices"] = sorted(devices)
    if spares is not None:
        d["spares"] = sorted(spares)
    if bitmap is not None:
        d["bitmap"] = bitmap
    if sync_action is not None:
        d["sync_action"] = sync_action
    return d


def _array_view(arr):
    active = [m.device for m in arr.members if not m.spare]
    spares = [m.device for m in arr.members if m.spare]
    return _view("running", arr.level, active, spares, arr.bitmap, arr.sync_action)


def _ours(fields, name, uuid=None):
    """Whether blkid fields describe an md member of array ``name`` (or ``uuid``)."""
    if fields.get("TYPE") != "linux_raid_member":
        return False
    if uuid and fields.get("UUID"):
        return _norm_uuid(fields["UUID"]) == _norm_uuid(uuid)
    return label_name(fields.get("LABEL")) == name


def _norm_uuid(u):
    return re.sub(r"[^0-9a-f]", "", (u or "").lower())


def _describe(real, fields):
    if not fields:
        return "%s: blank" % real
    if fields.get("TYPE") == "linux_raid_member":
        return "%s: md member of %r (UUID %s)" % (real, fields.get("LABEL"), fields.get("UUID"))
    return "%s: %s" % (real, blockdev.Probe(real, fields).describe())


def _check_same(spec, arr):
    """A running array must be what was asked: differences are reported, never rebuilt."""
    diffs = []
    if spec.level is not None and arr.level != spec.level:
        diffs.append("level is RAID%s, requested RAID%s" % (arr.level, spec.level))
    if spec.chunk is not None and arr.chunk and arr.chunk != spec.chunk:
        diffs.append("chunk is %dK, requested %dK" % (arr.chunk, spec.chunk))
    if spec.devices:
        if arr.raid_disks is not None and arr.raid_disks != len(spec.devices):
            diffs.append("it has %d raid devices, requested %d" % (arr.raid_disks, len(spec.devices)))
        wanted = {os.path.basename(r) for r in spec.real_devices + spec.real_spares}
        extra = [m.device for m in arr.members if m.kname not in wanted]
        if extra:
            diffs.append("members not listed in devices/spares: %s" % ", ".join(extra))
        missing = [g for g, r in spec.devices if arr.member(r) is None]
        if missing and not spec.readd_failed:
            diffs.append("devices that are not members: %s" % ", ".join(missing))
    if diffs:
        raise Refusal(
            "md array %s (%s, UUID %s) differs from the request: %s. md_array never reshapes or "
            "rebuilds an existing array: change it by hand, or remove it (state: absent, force: "
            "true) and create it again" % (spec.path, "/dev/" + arr.kname, arr.uuid,
                                           "; ".join(diffs)))


def plan_array(spec, runner):
    """Read the state (one mdadm process for a running array, one blkid for stopped members)
    and decide. Raises Refusal before anything is changed."""
    mp = MdPlan(spec, runner)
    plan = mp.plan
    arr = read_array(runner, spec.path)
    mp.array = arr
    path = spec.path

    if arr is not None:
        mp.before = _array_view(arr)
    elif spec.devices:
        # Not running: what do the requested members carry?
        for real in spec.real_devices + spec.real_spares:
            held = blockdev.holders(real)
            if held:
                raise Refusal("%s is in use by %s (held open by another array or mapping); "
                              "md_array will not touch it" % (real, ", ".join(held)))
        mp.probes = probe_members(runner, spec.real_devices + spec.real_spares)
        ours = [d for d, f in mp.probes.items() if _ours(f, spec.name)]
        if ours:
            mp.before = _view("stopped", devices=ours)

    if spec.state in ("stopped", "absent"):
        return _plan_down(mp, arr)

    # present / assembled: the array must run.
    if arr is not None and arr.sysfs.get("array_state") == "inactive":
        # assembled incompletely (udev's incremental assembly with a member missing): its
        # detail says "raid0, 0 devices", so nothing below would be true of it
        raise Refusal(
            "md array %s is inactive with %s (assembled incompletely, e.g. by udev with a member "
            "missing). Start it degraded with mdadm --run %s if enough members are there, or "
            "stop it (state: stopped) and assemble it with all its members"
            % (path, ", ".join(m.device for m in arr.members) or "no members", path))
    if arr is None:
        if not spec.devices:
            raise Refusal("md array %s is not running; list its members in devices to %s it"
                          % (path, "assemble" if spec.state == "assembled" else "create or assemble"))
        members = spec.real_devices + spec.real_spares
        ours = [d for d in members if _ours(mp.probes[d], spec.name)]
        others = [d for d in members if d not in ours]
        if ours:
            # Members of this very array are assembled, never created over (not even with
            # force: that would destroy the array this task names).
            if others:
                raise Refusal(
                    "cannot assemble %s: %s carry its md superblock but %s do not (%s). "
                    "Assemble it by hand, or destroy it first (state: absent, force: true)"
                    % (path, ", ".join(ours), ", ".join(others),
                       "; ".join(_describe(d, mp.probes[d]) for d in others)))
            plan.add("assemble", path, "the members carry array %s's superblock" % spec.name,
                     ["mdadm", "--assemble", path] + members)
            mp.after = _view("running", spec.level, spec.real_devices, spec.real_spares,
                             spec.bitmap)
        elif spec.state == "assembled":
            raise Refusal("cannot assemble %s: no listed device carries its md superblock (%s); "
                          "use state: present to create it"
                          % (path, "; ".join(_describe(d, mp.probes[d]) for d in members)))
        else:
            if spec.level is None:
                raise Refusal("md array %s does not exist; give level to create it" % path)
            for d in members:
                blockdev.refuse_unless_blank(
                    blockdev.Probe(d, mp.probes[d]), spec.force,
                    "a member of md array %s" % spec.name)
            argv = ["mdadm", "--create", path, "--run", "--homehost=any",
                    "--level=%d" % spec.level, "--raid-devices=%d" % len(spec.devices),
                    "--metadata=%s" % spec.metadata]
            if spec.chunk:
                argv.append("--chunk=%d" % spec.chunk)
            if spec.bitmap:
                argv.append("--bitmap=%s" % spec.bitmap)
            if spec.assume_clean:
                argv.append("--assume-clean")
            if spec.spares:
                argv.append("--spare-devices=%d" % len(spec.spares))
            reason = "RAID%d over %d devices" % (spec.level, len(spec.devices))
            if spec.assume_clean:
                reason += " (assume_clean: no initial resync)"
            if spec.force and any(mp.probes[d] for d in members):
                reason += "; force: overwriting %s" % "; ".join(
                    _describe(d, mp.probes[d]) for d in members if mp.probes[d])
            plan.add("create", path, reason, argv + members)
            mp.after = _view("running", spec.level, spec.real_devices, spec.real_spares,
                             spec.bitmap)
        _plan_action(mp, None)
        return mp

    # Running already.
    _check_same(spec, arr)
    mp.after = dict(mp.before)
    if spec.bitmap and arr.bitmap and arr.bitmap != spec.bitmap:
        plan.add("bitmap", path, "bitmap %s -> %s (live)" % (arr.bitmap, spec.bitmap),
                 ["mdadm", "--grow", path, "--bitmap=%s" % spec.bitmap])
        mp.after["bitmap"] = spec.bitmap
    if spec.metadata and arr.sysfs.get("metadata_version") not in (None, spec.metadata) \
            and spec.metadata != "1.2":
        plan.warn("%s has metadata %s, requested %s; metadata cannot change on an existing "
                  "array" % (path, arr.sysfs.get("metadata_version"), spec.metadata))
    if spec.readd_failed:
        _plan_readd(mp, arr)
    new_spares = [r for r in spec.real_spares if arr.member(r) is None]
    if new_spares:
        probes = probe_members(runner, new_spares)
        for d in new_spares:
            if blockdev.holders(d):
                raise Refusal("spare %s is in use by %s" % (d, ", ".join(blockdev.holders(d))))
            if not _ours(probes[d], spec.name, arr.uuid):
                blockdev.refuse_unless_blank(blockdev.Probe(d, probes[d]), spec.force,
                                             "a spare of md array %s" % spec.name)
            plan.add("add-spare", d, "listed in spares but not in the array",
                     ["mdadm", "--manage", path, "--add", d])
        mp.after["spares"] = sorted(mp.after.get("spares", []) + new_spares)
    unlisted = [m.device for m in arr.members if m.spare and spec.spares is not None
                and spec.devices and os.path.realpath(m.device) not in spec.real_spares
                and os.path.realpath(m.device) not in spec.real_devices]
    if unlisted:
        plan.warn("%s has spares that are not listed: %s" % (path, ", ".join(unlisted)))
    _plan_action(mp, arr)
    return mp


def _plan_readd(mp, arr):
    spec, plan, path = mp.spec, mp.plan, mp.spec.path
    for m in arr.members:
        if not m.faulty:
            continue
        real = os.path.realpath(m.device)
        if not os.path.exists(real):
            plan.warn("%s: faulty member %s has no block device any more; replace it by hand"
                      % (path, m.kname))
            continue
        plan.add("remove", m.device, "md marked it faulty (state %s, %s read errors)"
                 % (m.state, m.errors), ["mdadm", "--manage", path, "--remove", m.device])
        plan.add("re-add", m.device, "readd_failed: back into the array (--re-add; when md "
                 "refuses, its stale superblock is zeroed and it is added for a full rebuild)",
                 ["mdadm", "--manage", path, "--re-add", m.device])
        mp.readd.append(m.device)
    # Requested members missing from a degraded array (removed, or not found at assembly).
    missing = [(g, r) for g, r in spec.devices if arr.member(r) is None]
    if missing:
        probes = probe_members(mp.runner, [r for _g, r in missing])
        for g, r in missing:
            if blockdev.holders(r):
                raise Refusal("%s is in use by %s" % (g, ", ".join(blockdev.holders(r))))
            if not _ours(probes[r], spec.name, arr.uuid):
                raise Refusal(
                    "%s is listed in devices but is not a member of %s and does not carry its "
                    "superblock (%s); md_array re-adds only the array's own members"
                    % (g, path, _describe(r, probes[r])))
            plan.add("re-add", r, "listed member missing from the array; it carries the "
                     "array's superblock", ["mdadm", "--manage", path, "--re-add", r])
            mp.readd.append(r)
    if mp.readd:
        mp.after["state"] = "running"
        mp.after["devices"] = sorted(set(mp.after.get("devices", [])) | set(mp.readd))


def _plan_action(mp, arr):
    spec, plan, path = mp.spec, mp.plan, mp.spec.path
    current = arr.sync_action if arr is not None else None
    mp.wait = spec.wait
    if spec.action is None:
        return
    sysfs_file = "/sys/block/%s/md/sync_action" % (arr.kname if arr else "mdX")
    if spec.action == "idle":
        if current not in (None, "idle"):
            plan.add("sync-action", path, "stop %s (write idle to %s)" % (current, sysfs_file))
            mp.after["sync_action"] = "idle"
        return
    if current == spec.action:
        return  # already running: nothing to start (wait still waits)
    if current not in (None, "idle") and not spec.wait:
        raise Refusal("%s is busy with %s; %s cannot start now. Set wait: true to wait for it "
                      "to finish first" % (path, current, spec.action))
    plan.add("sync-action", path,
             "start %s (write %s to %s)" % (spec.action, spec.action, sysfs_file))
    mp.after["sync_action"] = spec.action


def _plan_down(mp, arr):
    spec, plan, path = mp.spec, mp.plan, mp.spec.path
    if arr is not None:
        held = blockdev.holders(arr.path)
        if held:
            raise Refusal("%s is in use by %s; unmap or stop those first" % (path, ", ".join(held)))
        plan.add("stop", path, "state %s" % spec.state, ["mdadm", "--stop", path])
        members = [m.device for m in arr.members]
        if spec.state == "absent" and spec.devices:
            # listed devices md already dropped still carry the array's superblock: zero them
            # too, or the array could come back from them
            current = {os.path.realpath(m) for m in members}
            rest = [d for d in spec.real_devices + spec.real_spares
                    if d not in current and not blockdev.holders(d)]
            mp.probes = probe_members(mp.runner, rest)
            members += [d for d in rest if _ours(mp.probes[d], spec.name)]
        mp.after = _view("stopped", devices=[m.device for m in arr.members if not m.spare])
    else:
        members = [d for d, f in mp.probes.items() if _ours(f, spec.name)]
        others = [d for d, f in mp.probes.items()
                  if f.get("TYPE") == "linux_raid_member" and not _ours(f, spec.name)]
        if others:
            plan.warn("%s carry another array's md superblock; left alone: %s"
                      % (path, "; ".join(_describe(d, mp.probes[d]) for d in others)))
        if not spec.devices:
            plan.warn("%s is not running; list its members in devices to find (and with state "
                      "absent, zero) their superblocks" % path)
        mp.after = mp.before
    if spec.state == "absent":
        if members and not spec.force:
            raise Refusal(
                "state absent stops %s and zeroes the md superblock on %s: that destroys the "
                "array (its data can then only be recovered by recreating it with the exact same "
                "geometry). Set force: true to do it" % (path, ", ".join(members)))
        for d in members:
            plan.add("zero-superblock", d, "state absent, force: true",
                     ["mdadm", "--zero-superblock", d])
        mp.zero = members
        mp.after = {"state": "absent"}
    return mp


# ---------------------------------------------------------------------------------------------
# Applying

def wait_idle(kname, timeout, sysfs=SYSFS_BLOCK, also_degraded=False, poll=0.2):
    """Poll ``md/sync_action`` (no process) until idle; with ``also_degraded`` until the array
    is no longer degraded either (a re-added member recovers). Returns the seconds waited."""
    start = time.monotonic()
    base = os.path.join(sysfs, kname, "md")
    while True:
        action = blockdev.read_text(os.path.join(base, "sync_action"))
        degraded = blockdev.read_text(os.path.join(base, "degraded"))
        busy = action not in (None, "idle", "frozen")
        if also_degraded and degraded not in (None, "0") and action is not None:
            busy = busy or (time.monotonic() - start) < 5.0
        if not busy:
            return round(time.monotonic() - start, 1)
        if timeout and time.monotonic() - start > timeout:
            raise Refusal("/dev/%s: still %s after %s s (wait_timeout); it goes on in the "
                          "background" % (kname, action, timeout))
        time.sleep(poll)


def wait_node(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise Refusal("%s did not appear within %d s after mdadm succeeded (is udev "
                          "running?)" % (path, timeout))
        time.sleep(0.1)


# members an array of each level can lack and still hold all its data
TOLERATED_MISSING = {1: None, 5: 1, 6: 2, 10: 1}


def _readd(runner, path, dev, kname, level):
    """--re-add; if md refuses (no bitmap, events too old), zero the stale superblock and
    --add for a full rebuild, but only while the array still holds all its data without that
    member: when several members were kicked at once (a cable, a controller), their
    superblocks are the way back (``mdadm --assemble --force``) and are never zeroed."""
    res = runner.run(["mdadm", "--manage", path, "--re-add", dev], changes=True, check=False)
    if res.rc == 0:
        return "re-added"
    said = (res.stderr or res.stdout).strip()
    degraded = blockdev.read_text(os.path.join(SYSFS_BLOCK, kname or "", "md", "degraded")) if kname else None
    raid_disks = blockdev.read_text(os.path.join(SYSFS_BLOCK, kname or "", "md", "raid_disks")) if kname else None
    tolerated = TOLERATED_MISSING.get(level, 0)
    if tolerated is None and raid_disks:
        tolerated = int(raid_disks.split()[0]) - 1
    if degraded is None or not degraded.isdigit() or int(degraded) > (tolerated or 0):
        raise Refusal(
            "%s: md refused to re-add %s (%s) and the array lacks %s members, more than RAID%s "
            "can rebuild from: not zeroing its superblock (it is how the data comes back). "
            "Stop the array and try mdadm --assemble --force with all members"
            % (path, dev, said, degraded if degraded is not None else "an unknown number of",
               level))
    runner.run(["mdadm", "--zero-superblock", dev], changes=True)
    runner.run(["mdadm", "--manage", path, "--add", dev], changes=True)
    return "added (full rebuild; --re-add said: %s)" % said


def apply(runner, mp):
    """Run the plan. Returns notes on how steps went (re-add fallbacks)."""
    notes = []
    spec = mp.spec
    kname = mp.array.kname if mp.array else None
    for step in mp.plan.steps:
        if step.action == "sync-action":
            value = spec.action
            if kname is None:
                kname = running_kname(spec.path)
            if kname is None:
                raise Refusal("%s is not running: cannot start %s" % (spec.path, value))
            if spec.wait and value != "idle":
                wait_idle(kname, spec.wait_timeout)
            try:
                with open(os.path.join(SYSFS_BLOCK, kname, "md", "sync_action"), "w") as f:
                    f.write(value)
            except OSError as exc:
                now = blockdev.read_text(os.path.join(SYSFS_BLOCK, kname, "md", "sync_action"))
                raise Refusal("%s: md refused %s (%s) while its sync_action is %s; run again "
                              "with wait: true to let that finish first"
                              % (spec.path, value, exc.strerror or exc, now)) from None
            continue
        if step.action == "re-add":
            level = mp.array.level if mp.array else None
            notes.append("%s: %s" % (step.obj, _readd(runner, spec.path, step.obj, kname, level)))
            continue
        runner.run(step.argv, changes=True)
        if step.action in ("create", "assemble"):
            blockdev.settle(runner)
            wait_node(spec.path)
            kname = running_kname(spec.path)
        elif step.action == "stop":
            blockdev.settle(runner)
    if spec.wait and spec.state in ("present", "assembled"):
        kname = kname or running_kname(spec.path)
        if kname:
            base = os.path.join(SYSFS_BLOCK, kname, "md")
            if blockdev.read_text(os.path.join(base, "array_state")) == "read-auto" \
                    and blockdev.read_text(os.path.join(base, "degraded")) not in (None, "0"):
                # assembled by udev (mdadm --incremental) and auto-read-only: md starts the
                # recovery of a rebuilding member only at the first write, so wait would
                # return degraded; switching to read-write lets it run (lab: a power cut
                # during a recovery)
                runner.run(["mdadm", "--readwrite", spec.path], changes=True)
                notes.append("%s was auto-read-only with a rebuild pending: switched to read-write "
                             "so the recovery runs" % spec.path)
                mp.readwrite = True
            wait_idle(kname, spec.wait_timeout, also_degraded=True)
    return notes


def converge(runner, spec):
    """Plan (refusing before anything changes), apply, read back. Returns the result dict."""
    mp = plan_array(spec, runner)
    notes = []
    changed = mp.plan.changed
    if not runner.check_mode and (changed or mp.wait):
        notes = apply(runner, mp)
    after = None
    if not runner.check_mode and (changed or mp.wait):
        after = read_array(runner, spec.path)
    elif not runner.check_mode:
        after = mp.array
    return report(mp, after, notes)


def report(mp, arr, notes):
    spec = mp.spec
    res = {
        "changed": mp.plan.changed or mp.readwrite,
        "name": spec.name,
        "device": spec.path if (arr is not None or mp.after.get("state") == "running") else None,
        "kernel_device": "/dev/" + arr.kname if arr is not None else None,
        "uuid": arr.uuid if arr is not None else None,
        "level": arr.level if arr is not None else mp.after.get("level"),
        "degraded": arr.degraded if arr is not None else None,
        "state": arr.array_state if arr is not None else None,
        "sync_action": arr.sync_action if arr is not None else None,
        "mismatch_cnt": arr.mismatch_cnt if arr is not None else None,
        "members": [m.as_dict() for m in arr.members] if arr is not None else [],
        "actions": mp.plan.as_list(),
        "notes": notes,
        "warnings": list(mp.plan.warnings),
        "diff": {"before": mp.before, "after": _array_view(arr) if arr is not None else mp.after},
    }
    if arr is not None and arr.degraded:
        faulty = [m.device for m in arr.members if m.faulty]
        res["warnings"].append("%s is degraded%s" % (
            spec.path, (": faulty members %s (readd_failed: true brings them back)"
                        % ", ".join(faulty)) if faulty else ""))
    return res
