# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Standalone dm-integrity: read state once, plan, apply.

Seed 004: md RAID trusts its disks, so a member that returns wrong bytes poisons the array.
A dm-integrity mapping under each member turns silent corruption into a read error (EIO),
which md repairs from redundancy.

State comes from two processes whatever the number of devices (``dmsetup table`` and
``dmsetup status`` of every integrity mapping), plus per device one ``blkid -p`` and, for
formatted ones, ``integritysetup dump`` (the superblock: tag size, sector size). The
superblock does not record the checksum algorithm: an open mapping shows it in its table;
a closed one is opened with the algorithm asked for, and a wrong one makes every read fail,
which the module checks with one direct read after opening.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ansible_collections.blindvault.storage.plugins.module_utils.block import device as blockdev
from ansible_collections.blindvault.storage.plugins.module_utils.plan import (
    Plan,
    Refusal,
    apply_all,
    refuse_duplicates,
)

STATES = ("opened", "closed", "present", "absent")
WIPES = ("full", "none", "zero")
# algorithm -> (kernel name in the dm table, natural tag size in bytes)
ALGORITHMS = {
    "crc32c": ("crc32c", 4),
    "crc32": ("crc32", 4),
    "sha1": ("sha1", 20),
    "sha256": ("sha256", 32),
    "hmac-sha256": ("hmac(sha256)", 32),
}
KEYED = ("hmac-sha256",)
# journal option -> dm-integrity mode letter, and integritysetup open flag
JOURNALS = {"journal": ("J", []), "bitmap": ("B", ["--integrity-bitmap-mode"]),
            "none": ("D", ["--integrity-no-journal"])}
MODE_NAMES = {letter: name for name, (letter, _f) in JOURNALS.items()}
SECTOR_SIZES = (512, 1024, 2048, 4096)
DEFAULT_SECTOR_SIZE = 4096
HMAC_KEY_SIZES = range(16, 4097)

EIO_WARNING = ("%s was formatted with wipe: none: its tags are not initialised, so every sector "
               "reads as an I/O error (EIO) until it has been written once (an md resync, a full "
               "write, or wipe: zero)")


@dataclass(frozen=True)
class Mapping:
    """One open dm-integrity mapping, from ``dmsetup table`` and ``dmsetup status``."""

    name: str
    majmin: tuple
    tag_size: int
    mode: str
    sector_size: int
    algorithm: str
    failures: int = 0
    sectors: int = 0

    @property
    def journal(self):
        return MODE_NAMES.get(self.mode, self.mode)


@dataclass(frozen=True)
class Superblock:
    """The on-disk dm-integrity superblock, from ``integritysetup dump``."""

    tag_size: int
    sector_size: int
    provided_sectors: int
    flags: tuple = ()


def _lines_by_name(text):
    """``NAME: rest`` lines of dmsetup's multi-device output ("No devices found" -> {})."""
    out = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(": ")
        if sep and rest.strip():
            out[name.strip()] = rest.split()
    return out


def _majmin(value):
    major, _sep, minor = value.partition(":")
    return (int(major), int(minor))


def parse_dmsetup(table_text, status_text):
    """Mappings from ``dmsetup table --target integrity`` and ``dmsetup status --target
    integrity``. A table line is ``0 SECTORS integrity DEV OFFSET TAG_SIZE MODE N ARGS...``;
    a status line ``0 SECTORS integrity MISMATCHES PROVIDED_SECTORS RECALC``."""
    status = _lines_by_name(status_text)
    mappings = {}
    for name, f in _lines_by_name(table_text).items():
        if len(f) < 7 or f[2] != "integrity":
            continue
        nopts = int(f[7]) if len(f) > 7 else 0
        opts = f[8:8 + nopts]
        sector_size, algorithm = 512, None
        for opt in opts:
            key, _sep, value = opt.partition(":")
            if key == "block_size":
                sector_size = int(value)
            elif key == "internal_hash":
                # ``hmac(sha256):KEYHEX`` for keyed tags: the kernel prints the key; drop it here
                algorithm = value.partition(":")[0]
        st = status.get(name, [])
        failures = int(st[3]) if len(st) > 3 and st[3].isdigit() else 0
        mappings[name] = Mapping(name=name, majmin=_majmin(f[3]), tag_size=int(f[5]),
                                 mode=f[6], sector_size=sector_size, algorithm=algorithm,
                                 failures=failures, sectors=int(f[1]))
    return mappings


def parse_dump(text):
    """The superblock fields of ``integritysetup dump`` (``key value`` lines)."""
    fields = {}
    for line in text.splitlines():
        key, _sep, value = line.strip().partition(" ")
        if key:
            fields[key] = value.strip()
    try:
        return Superblock(tag_size=int(fields["integrity_tag_size"]),
                          sector_size=int(fields["sector_size"]),
                          provided_sectors=int(fields.get("provided_data_sectors", 0)),
                          flags=tuple(fields.get("flags", "").split()))
    except (KeyError, ValueError):
        raise Refusal("cannot read the dm-integrity superblock: integritysetup dump said %r"
                      % text.strip()[:200]) from None


def read_mappings(runner):
    """Every open dm-integrity mapping: two processes however many there are."""
    outputs = []
    for what in ("table", "status"):
        res = runner.run(["dmsetup", what, "--target", "integrity"], check=False)
        if res.rc != 0:
            # not a CommandError: its stdout (a table line holds an HMAC key) would reach
            # fail_json
            raise Refusal("dmsetup %s --target integrity failed (rc=%d): %s"
                          % (what, res.rc, res.stderr.strip() or "no message"))
        outputs.append(res.stdout)
    return parse_dmsetup(*outputs)


def algorithm_of(kernel_name):
    for name, (kernel, _size) in ALGORITHMS.items():
        if kernel == kernel_name:
            return name
    return kernel_name


class IntegritySpec:
    """One declared dm-integrity device, validated before anything is read or changed."""

    __slots__ = ("device", "name", "state", "algorithm", "tag_size", "sector_size", "journal",
                 "wipe", "key_file", "force")

    def __init__(self, device, name=None, state="opened", algorithm="crc32c", tag_size=None,
                 sector_size=None, journal="journal", wipe="full", key_file=None, force=False):
        if state not in STATES:
            raise Refusal("state must be one of %s, got %r" % (", ".join(STATES), state))
        if algorithm not in ALGORITHMS:
            raise Refusal("algorithm must be one of %s, got %r"
                          % (", ".join(ALGORITHMS), algorithm))
        if journal not in JOURNALS:
            raise Refusal("journal must be one of %s, got %r" % (", ".join(JOURNALS), journal))
        if wipe not in WIPES:
            raise Refusal("wipe must be one of %s, got %r" % (", ".join(WIPES), wipe))
        if sector_size is not None and sector_size not in SECTOR_SIZES:
            raise Refusal("sector_size must be one of %s, got %r"
                          % (", ".join(map(str, SECTOR_SIZES)), sector_size))
        if tag_size is not None and not 1 <= tag_size <= ALGORITHMS[algorithm][1]:
            raise Refusal("tag_size %r does not fit algorithm %s (1 to %d bytes)"
                          % (tag_size, algorithm, ALGORITHMS[algorithm][1]))
        blockdev.check_dm_name(name)
        if state == "opened" and not name:
            raise Refusal("%s: state opened needs name (the mapping becomes /dev/mapper/NAME)"
                          % device)
        if algorithm in KEYED:
            if not key_file:
                raise Refusal("algorithm %s needs key_file (the HMAC key)" % algorithm)
            try:
                size = os.stat(key_file).st_size
            except OSError as exc:
                raise Refusal("key_file %s: %s" % (key_file, exc.strerror)) from None
            if size not in HMAC_KEY_SIZES:
                raise Refusal("key_file %s holds %d bytes; an HMAC key of 16 to 4096 bytes is "
                              "needed (32 random bytes is usual)" % (key_file, size))
        elif key_file:
            raise Refusal("key_file is only used with a keyed algorithm (%s), not %s"
                          % (", ".join(KEYED), algorithm))
        self.device = blockdev.require_block_device(device)
        self.name = name
        self.state = state
        self.algorithm = algorithm
        self.tag_size = tag_size
        self.sector_size = sector_size
        self.journal = journal
        self.wipe = wipe
        self.key_file = key_file
        self.force = bool(force)

    @property
    def wanted_tag_size(self):
        return self.tag_size or ALGORITHMS[self.algorithm][1]

    def algorithm_args(self):
        argv = ["--integrity", self.algorithm]
        if self.key_file:
            argv += ["--integrity-key-file", self.key_file,
                     "--integrity-key-size", str(os.stat(self.key_file).st_size)]
        return argv

    def open_argv(self):
        return (["integritysetup", "open", self.device, self.name] + self.algorithm_args()
                + JOURNALS[self.journal][1])


class ItemPlan:
    def __init__(self, spec):
        self.spec = spec
        self.plan = Plan()
        self.before = {"state": "absent"}
        self.after = {}
        self.superblock = None
        self.mapping = None
        self.wipe_seconds = None


def _view(state, tag_size=None, sector_size=None, journal=None,
          algorithm=None, name=None):
    d = {"state": state}
    for key, value in (("name", name), ("algorithm", algorithm), ("tag_size", tag_size),
                       ("sector_size", sector_size), ("journal", journal)):
        if value is not None:
            d[key] = value
    return d


def _mapping_on(device, mappings):
    rdev = os.stat(device).st_rdev
    majmin = (os.major(rdev), os.minor(rdev))
    return [m for m in mappings.values() if m.majmin == majmin]


def plan_item(runner, spec, mappings):
    """Decide what one spec needs, from the mappings read once for all specs."""
    ip = ItemPlan(spec)
    plan = ip.plan
    dev = spec.device
    found = blockdev.probe(runner, dev)
    on_dev = _mapping_on(dev, mappings)
    if len(on_dev) > 1:
        raise Refusal("%s carries %d dm-integrity mappings (%s); manage them by hand"
                      % (dev, len(on_dev), ", ".join(m.name for m in on_dev)))
    ip.mapping = mapping = on_dev[0] if on_dev else None
    if spec.name and spec.name in mappings and mapping is not mappings[spec.name]:
        raise Refusal("a dm-integrity mapping named %s already exists on another device; "
                      "choose another name" % spec.name)
    formatted = found.type == "DM_integrity" or mapping is not None
    if formatted:
        ip.superblock = sb = parse_dump(runner.run(["integritysetup", "dump", dev]).stdout)
        state = "opened" if mapping else "closed"
        ip.before = _view(state, tag_size=sb.tag_size, sector_size=sb.sector_size,
                          name=mapping.name if mapping else None,
                          journal=mapping.journal if mapping else None,
                          algorithm=algorithm_of(mapping.algorithm) if mapping else None)
    elif spec.state == "absent":
        ip.after = ip.before
        return ip

    if spec.state == "absent":
        if not spec.force:
            raise Refusal("%s: state absent erases the dm-integrity superblock, and with it the "
                          "data's checksums (the data cannot be read through dm-integrity "
                          "again); set force: true to do it" % dev)
        if mapping:
            _plan_close(plan, dev, mapping, "state absent")
        plan.add("erase", dev, "state absent with force: wipe the dm-integrity signature",
                 ["wipefs", "--all", dev])
        ip.after = {"state": "absent"}
        return ip

    if not formatted:
        _plan_format(ip, found)
        return ip

    sb = ip.superblock
    if sb.tag_size != spec.wanted_tag_size or (spec.sector_size and
                                               sb.sector_size != spec.sector_size):
        raise Refusal(
            "%s is a dm-integrity device with tag size %d and sector size %d, but tag size %d%s "
            "was asked for (algorithm %s); refusing to reformat it: that would destroy its data. "
            "Declare what is on the device, or wipe it yourself to start again"
            % (dev, sb.tag_size, sb.sector_size, spec.wanted_tag_size,
               " and sector size %d" % spec.sector_size if spec.sector_size else "",
               spec.algorithm))
    if mapping and spec.state != "closed":  # closing needs neither to match
        if algorithm_of(mapping.algorithm) != spec.algorithm:
            raise Refusal("%s is open as %s with algorithm %s, not %s; refusing to reopen it "
                          "with another algorithm (every read would fail)"
                          % (dev, mapping.name, algorithm_of(mapping.algorithm), spec.algorithm))
        if spec.name and mapping.name != spec.name:
            raise Refusal("%s is already open as %s, not %s; close it first or declare name %s"
                          % (dev, mapping.name, spec.name, mapping.name))
    name = spec.name or (mapping.name if mapping else None)
    common = dict(tag_size=sb.tag_size, sector_size=sb.sector_size, algorithm=spec.algorithm)
    if spec.state == "closed" or (spec.state == "present" and not mapping):
        if mapping:
            _plan_close(plan, dev, mapping, "state closed")
            ip.after = _view("closed", tag_size=sb.tag_size, sector_size=sb.sector_size)
        else:
            ip.after = dict(ip.before)
        return ip
    if not mapping:
        plan.add("open", dev, "open as /dev/mapper/%s (%s)" % (name, spec.journal),
                 spec.open_argv())
        ip.after = _view("opened", name=name, journal=spec.journal, **common)
        return ip
    if mapping.journal != spec.journal and spec.state == "opened":
        _plan_close(plan, dev, mapping, "reopen in %s mode (now %s)"
                    % (spec.journal, mapping.journal), reopen=True)
        plan.add("open", dev, "reopen in %s mode" % spec.journal, spec.open_argv())
    ip.after = _view("opened", name=name, journal=spec.journal if spec.state == "opened"
                     else mapping.journal, **common)
    return ip


def _plan_close(plan, dev, mapping, reason, reopen=False):
    users = blockdev.holders("/dev/mapper/" + mapping.name)
    if users:
        raise Refusal("%s: cannot %s: /dev/mapper/%s is in use by %s; stop that first"
                      % (dev, "reopen it" if reopen else "close it", mapping.name,
                         ", ".join(users)))
    plan.add("close", dev, reason, ["integritysetup", "close", mapping.name])


def _plan_format(ip, found):
    spec, plan = ip.spec, ip.plan
    dev = spec.device
    blockdev.refuse_unless_blank(found, spec.force, "a dm-integrity device")
    users = blockdev.holders(dev)
    if users:
        raise Refusal("%s is in use by %s; refusing to format it" % (dev, ", ".join(users)))
    sector = spec.sector_size or DEFAULT_SECTOR_SIZE
    argv = ["integritysetup", "format", "--batch-mode", dev,
            "--tag-size", str(spec.wanted_tag_size), "--sector-size", str(sector)]
    argv += spec.algorithm_args()
    if spec.wipe != "full":
        argv.append("--no-wipe")
    reason = {"full": "tags initialised by integritysetup (writes the whole device)",
              "none": "no wipe: unwritten sectors read as EIO until written",
              "zero": "no wipe, then a direct-I/O zero fill of the mapping"}[spec.wipe]
    if not found.empty:
        # integritysetup writes only its superblock: an old md 1.0 superblock or ZFS label at
        # the end would survive, shadow DM_integrity in the next probe and invite a reformat
        plan.warn("%s: formatting over %s (force: true)" % (dev, found.describe()))
        plan.add("wipe-signatures", dev, "force: erase %s first" % found.describe(),
                 ["wipefs", "--all", dev])
    plan.add("format", dev, reason, argv)
    name = spec.name
    opened = spec.state == "opened"
    if spec.wipe == "zero":
        # the fill writes every sector once, without a journal (a journal would write it twice)
        temp = name if opened else "bvzero-%s" % blockdev.kernel_name(dev)
        plan.add("open", dev, "open without a journal for the zero fill",
                 ["integritysetup", "open", dev, temp] + spec.algorithm_args()
                 + JOURNALS["none"][1])
        plan.add("zero", "/dev/mapper/" + temp, "write zeros to every sector (dd oflag=direct)")
        if not (opened and spec.journal == "none"):
            plan.add("close", dev, "after the zero fill", ["integritysetup", "close", temp])
            if opened:
                plan.add("open", dev, "open as /dev/mapper/%s (%s)" % (name, spec.journal),
                         spec.open_argv())
    elif opened:
        plan.add("open", dev, "open as /dev/mapper/%s (%s)" % (name, spec.journal),
                 spec.open_argv())
    if spec.wipe == "none":
        plan.warn(EIO_WARNING % dev)
    if opened:
        ip.after = _view("opened", name=name, journal=spec.journal, algorithm=spec.algorithm,
                         tag_size=spec.wanted_tag_size, sector_size=sector)
    else:
        ip.after = _view("closed", tag_size=spec.wanted_tag_size, sector_size=sector)


def zero_fill(runner, mapper):
    """Write zeros over the whole mapping with direct I/O (initialises every tag once).

    dd writes to the resolved kernel node (``/dev/dm-N``) with ``conv=nocreat``: if udev has
    not made the node, dd must fail rather than create a regular file in /dev's tmpfs."""
    node = None
    for _attempt in range(10):
        blockdev.settle(runner)
        try:
            node = blockdev.require_block_device(mapper)
            break
        except Refusal:
            time.sleep(0.5)
    if node is None:
        raise Refusal("%s did not appear after opening it (is udev running?)" % mapper)
    size = blockdev.size_bytes(node)
    runner.run(["dd", "if=/dev/zero", "of=" + node, "bs=1M", "count=%d" % size,
                "iflag=count_bytes", "oflag=direct", "conv=nocreat,notrunc", "status=none"],
               changes=True)
    blockdev.settle(runner)  # udev re-probes the device when dd closes it: let that finish


def _apply_item(runner, ip):
    formats = any(step.action == "format" for step in ip.plan.steps)
    for step in ip.plan.steps:
        if step.action == "zero":
            start = time.monotonic()
            zero_fill(runner, step.obj)
            ip.wipe_seconds = round(time.monotonic() - start, 3)
            continue
        start = time.monotonic()
        runner.run(step.argv, changes=True)
        if step.action == "format" and ip.spec.wipe == "full":
            ip.wipe_seconds = round(time.monotonic() - start, 3)
        if step.action in ("open", "close"):
            blockdev.settle(runner)
    last = ip.plan.steps[-1] if ip.plan.steps else None
    if last is not None and last.action == "open" and not formats:
        _check_readable(runner, ip)


def _check_readable(runner, ip):
    """The superblock does not record the algorithm: one direct read of the first sector
    shows whether the mapping was opened with the one it was formatted with."""
    mapper = "/dev/mapper/%s" % ip.spec.name
    res = runner.run(["dd", "if=" + mapper, "of=/dev/null", "bs=%d" % ip.superblock.sector_size,
                      "count=1", "iflag=direct", "status=none"], check=False)
    if res.rc != 0:
        ip.plan.warn("%s: reading the first sector of %s failed (%s): either it was formatted "
                     "with another algorithm or key than %s, or with wipe: none and never "
                     "written" % (ip.spec.device, mapper, res.stderr.strip() or "rc=%d" % res.rc,
                                  ip.spec.algorithm))


def converge(runner, specs):
    """Converge every spec: one read of the mappings before and one after."""
    for key in ("device", "name"):
        refuse_duplicates([getattr(s, key) for s in specs], key)
    mappings = read_mappings(runner)
    plans = [plan_item(runner, spec, mappings) for spec in specs]
    if runner.check_mode or not any(ip.plan.steps for ip in plans):
        return [_report(ip, mappings) for ip in plans]
    apply_all(plans, lambda ip: _apply_item(runner, ip), lambda ip: ip.spec.device)
    after = read_mappings(runner)
    return [_report(ip, after) for ip in plans]


def _report(ip, after):
    """The result for one spec: the kernel's view from ``after`` (the mappings read after
    applying), or without it (check mode, nothing to do) the plan's view."""
    spec, view = ip.spec, ip.after
    if after is not None:
        on_dev = _mapping_on(spec.device, after)
        mapping = on_dev[0] if on_dev else None
    else:
        mapping = ip.mapping if view.get("state") == "opened" else None
    opened = view.get("state") == "opened"
    name = view.get("name") or (mapping.name if mapping else None)
    return {
        "device": spec.device,
        "name": name,
        "state": view.get("state"),
        "changed": ip.plan.changed,
        "actions": ip.plan.as_list(),
        "warnings": ip.plan.warnings,
        "diff": {"before": ip.before, "after": view},
        "mapper": "/dev/mapper/%s" % name if opened and name else None,
        "opened": opened,
        "algorithm": view.get("algorithm"),
        "tag_size": view.get("tag_size"),
        "sector_size": view.get("sector_size"),
        "journal": view.get("journal"),
        "failures": mapping.failures if mapping else None,
        "size": mapping.sectors * 512 if mapping else None,
        "wipe_seconds": ip.wipe_seconds,
    }
