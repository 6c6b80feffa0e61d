# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the block-layer backends (LUKS2, dm-integrity, md) share about a device: that it is
one, what signatures it carries (``blkid -p``, one process), who holds it open, and the
refusal to format over existing data unless ``force`` is set."""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal

SYSFS_BLOCK = "/sys/class/block"


@dataclass(frozen=True)
class Probe:
    """``blkid -p -o export`` of one device: ``type`` (``crypto_LUKS``, ``DM_integrity``,
    ``linux_raid_member``, ``ext4``, ...) or ``pttype`` for a partition table; empty when the
    device carries no signature blkid knows."""

    device: str
    fields: dict = field(default_factory=dict)

    @property
    def type(self):
        return self.fields.get("TYPE")

    @property
    def pttype(self):
        return self.fields.get("PTTYPE")

    @property
    def ambivalent(self):
        return self.fields.get("AMBIVALENT") == "1"

    @property
    def empty(self):
        return not (self.type or self.pttype or self.ambivalent)

    def describe(self):
        if self.ambivalent:
            return "several conflicting signatures (blkid: ambivalent result)"
        if self.type:
            return "a %s signature" % self.type
        if self.pttype:
            return "a %s partition table" % self.pttype
        return "no signature"


def parse_export(text, unescape=False):
    """``KEY=value`` lines as ``blkid -o export`` and ``mdadm --export`` print them, as a dict.
    ``unescape``: blkid backslash-escapes spaces, quotes, ``$``, backticks, ``<`` and ``>`` in
    values (a label ``my data`` comes out as ``my\\ data``)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            value = value.strip()
            fields[key.strip()] = re.sub(r"\\(.)", r"\1", value) if unescape else value
    return fields


def probe(runner, device):
    """The signatures on ``device`` from a low-level probe (the device itself, not the cache).

    ``blkid`` exits 2 when it finds nothing, but also when reading the device fails: "blank" is
    believed only after the device's first and last 64 KiB have been read. Exit 8 means
    conflicting signatures: not blank (``force`` may still overwrite it).
    """
    res = runner.run(["blkid", "-p", "-o", "export", device], check=False)
    if res.rc == 2:
        require_readable(device)
        return Probe(device)
    if res.rc == 8:
        return Probe(device, {"AMBIVALENT": "1"})
    if res.rc != 0:
        raise Refusal("cannot probe %s: blkid said %s" % (
            device, (res.stderr or res.stdout).strip() or "rc=%d" % res.rc))
    return Probe(device, parse_export(res.stdout, unescape=True))


def require_readable(device, span=65536):
    """Read the first and last ``span`` bytes of ``device``; a Refusal if that fails."""
    try:
        fd = os.open(device, os.O_RDONLY)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            for offset in sorted({0, max(0, size - span)}):
                os.pread(fd, span, offset)
        finally:
            os.close(fd)
    except OSError as exc:
        raise Refusal(
            "%s cannot be read (%s), so there is no telling whether it holds data; refusing to "
            "treat it as blank. A dm-integrity or LUKS2-integrity mapping opened with the wrong "
            "algorithm or key, or formatted with wipe: none and never written, reads like this"
            % (device, exc.strerror or exc)) from None


def require_block_device(path, what="device"):
    """The real path of ``path`` if it is a block device; a Refusal naming it otherwise."""
    if not path:
        raise Refusal("%s is required" % what)
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise Refusal("%s %s does not exist" % (what, path)) from None
    if not stat.S_ISBLK(st.st_mode):
        raise Refusal("%s %s is not a block device (attach a file with loop_device first)"
                      % (what, path))
    return real


def kernel_name(device):
    """``dm-3`` for ``/dev/mapper/x``, ``loop2`` for ``/dev/loop2``: the name under sysfs."""
    return os.path.basename(os.path.realpath(device))


def holders(device, sysfs=SYSFS_BLOCK):
    """Kernel names of the devices stacked on ``device`` (dm mappings, md arrays)."""
    try:
        return sorted(os.listdir(os.path.join(sysfs, kernel_name(device), "holders")))
    except OSError:
        return []


def in_use(device, sysfs=SYSFS_BLOCK):
    """What holds ``device``: its sysfs holders (dm, md), or ``"an exclusive opener"`` (a
    mounted filesystem, a ZFS pool) when an ``O_EXCL`` open fails with EBUSY; None if free."""
    held = holders(device, sysfs)
    if held:
        return ", ".join(held)
    try:
        os.close(os.open(device, os.O_RDONLY | os.O_EXCL))
    except OSError as exc:
        return "an exclusive opener (a mounted filesystem or a pool)" if exc.errno == errno.EBUSY else None
    return None


def size_bytes(device, sysfs=SYSFS_BLOCK):
    """Size of a block device from sysfs (``size`` counts 512-byte sectors): no process."""
    with open(os.path.join(sysfs, kernel_name(device), "size")) as f:
        return int(f.read()) * 512


def check_dm_name(name):
    """A Refusal unless ``name`` can be a device-mapper name (``/dev/mapper/NAME``); None
    (no name given) passes."""
    if name is not None and (not name or "/" in name or name in (".", "..")
                             or len(name) > 127 or re.search(r"[\s\x00-\x1f\x7f]", name)):
        raise Refusal("name %r is not a valid device-mapper name (1 to 127 characters, no "
                      "slashes, spaces or control characters)" % (name,))


def read_text(path):
    """A sysfs attribute (or any small file), stripped; None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def dm_name(kname, sysfs=SYSFS_BLOCK):
    """The device-mapper name of kernel device ``dm-N`` (None when it is not one)."""
    return read_text(os.path.join(sysfs, kname, "dm", "name"))


def refuse_unless_blank(found, force, purpose):
    """Formatting over existing data is refused unless ``force``: say what is there and how to
    proceed. ``found`` is a Probe; ``purpose`` says what formatting would create."""
    if found.empty or force:
        return
    raise Refusal(
        "%s already has %s (blkid: %s); refusing to format it as %s: that would destroy what is "
        "on it. Check the device path; set force: true only to overwrite it on purpose"
        % (found.device, found.describe(),
           " ".join("%s=%s" % kv for kv in sorted(found.fields.items())
                    if kv[0] in ("TYPE", "PTTYPE", "UUID", "LABEL")),
           purpose))


def settle(runner):
    """Wait for udev to create or remove /dev/mapper and /dev/md nodes (best effort)."""
    runner.run(["udevadm", "settle"], check=False)
