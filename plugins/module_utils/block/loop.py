# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Loop devices: read state with one ``losetup --list --json``, plan, apply.

Seed 003: a loop device with direct I/O over a Btrfs file produced checksum errors.
``direct_io: auto`` therefore turns direct I/O on only where the backing file sits on
ext4 or xfs, read from the kernel (statfs) rather than guessed from a path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import stat
import time
from dataclasses import dataclass

from ansible_collections.blindvault.storage.plugins.module_utils.block.device import in_use
from ansible_collections.blindvault.storage.plugins.module_utils.plan import (
    Plan,
    Refusal,
    apply_all,
    refuse_duplicates,
)

STATES = ("attached", "detached", "absent")
DIRECT_IO_MODES = ("auto", "on", "off")
SECTOR_SIZES = (512, 4096)

# statfs(2) f_type magics (linux/magic.h) for the filesystems a backing file may sit on.
FS_MAGIC = {
    0xEF53: "ext4",  # ext2/ext3/ext4 share one magic; the ext4 driver serves all three
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x2FC12FC1: "zfs",
    0x01021994: "tmpfs",
    0x858458F6: "ramfs",
    0x794C7630: "overlay",
    0x01021997: "9p",
    0x6969: "nfs",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0xF2F52010: "f2fs",
    0x65735546: "fuse",
    0x4D44: "vfat",
    0x5346544E: "ntfs",
    0x73717368: "squashfs",
    0xCA451A4E: "bcachefs",
}
DIRECT_IO_FS = ("ext4", "xfs")

LOSETUP_COLUMNS = "NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN,RO,DIO,LOG-SEC,OFFSET,SIZELIMIT,AUTOCLEAR"

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGTP]?)(i?B?)\s*$", re.IGNORECASE)


def parse_size(value):
    """``64M``/``64MiB`` -> 64 * 1024**2; ``64MB`` -> 64 * 1000**2; plain numbers are bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise Refusal("size must be positive, got %r" % value)
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise Refusal("size %r is not a size: use bytes or a number with K, M, G, T "
                      "(binary, e.g. 64M or 64MiB) or KB, MB, GB, TB (decimal)" % (value,))
    number, unit, suffix = int(m.group(1)), m.group(2).upper(), m.group(3)
    base = 1000 if suffix.upper() == "B" else 1024
    size = number * base ** "_KMGTP".index(unit) if unit else number
    if size <= 0:
        raise Refusal("size must be positive, got %r" % (value,))
    return size


@dataclass(frozen=True)
class Attachment:
    """One loop device as the kernel reports it (``dev`` is the backing file's (major, minor))."""

    device: str
    file: str
    inode: int
    dev: tuple
    read_only: bool = False
    direct_io: bool = False
    sector_size: int = 512
    offset: int = 0
    sizelimit: int = 0
    autoclear: bool = False

    @property
    def deleted(self):
        """The backing file was unlinked: its inode number may belong to a new file now."""
        return bool(self.file) and self.file.endswith(" (deleted)")

    def backs(self, st):
        return not self.deleted and self.inode == st.st_ino and \
            self.dev == (os.major(st.st_dev), os.minor(st.st_dev))


def _flag(value):
    if isinstance(value, bool):
        return value
    return str(value).strip() in ("1", "true", "yes")


def _int(value, default=0):
    if value in (None, ""):
        return default
    return int(value)


def _majmin(value):
    if not value:
        return None
    major, _sep, minor = str(value).partition(":")
    return (int(major), int(minor))


def parse_losetup_json(text):
    """Parse ``losetup --list --json --output LOSETUP_COLUMNS`` (empty output: no devices)."""
    if not text.strip():
        return []
    data = json.loads(text)
    found = []
    for row in data.get("loopdevices", []):
        found.append(Attachment(
            device=row["name"],
            file=row.get("back-file"),
            inode=_int(row.get("back-ino"), None),
            dev=_majmin(row.get("back-maj:min")),
            read_only=_flag(row.get("ro")),
            direct_io=_flag(row.get("dio")),
            sector_size=_int(row.get("log-sec"), 512),
            offset=_int(row.get("offset")),
            sizelimit=_int(row.get("sizelimit")),
            autoclear=_flag(row.get("autoclear")),
        ))
    return found


def read_attachments(runner):
    res = runner.run(["losetup", "--list", "--json", "--output", LOSETUP_COLUMNS])
    return parse_losetup_json(res.stdout)


def kernel_direct_io(device, sysfs="/sys/block"):
    """What the kernel really does: ``/sys/block/loopN/loop/dio`` (it may refuse silently)."""
    try:
        with open(os.path.join(sysfs, os.path.basename(device), "loop", "dio")) as f:
            return f.read().strip() == "1"
    except OSError:
        return None


def kernel_bound(device, sysfs="/sys/block"):
    """True while a loop device still has a backing file (``losetup -d`` of a busy one defers)."""
    return os.path.exists(os.path.join(sysfs, os.path.basename(device), "loop", "backing_file"))


def still_bound(devices, timeout=5.0):
    """Devices still bound after waiting up to ``timeout`` s.

    ``losetup -d`` on a device that someone holds open (often just udev's blkid probing it
    after a write) only sets autoclear; the kernel detaches it when the last opener closes.
    """
    deadline = time.monotonic() + timeout
    while True:
        busy = [d for d in devices if kernel_bound(d)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.1)


class _Statfs(ctypes.Structure):
    # Only f_type is read; the rest of struct statfs is padding large enough for any arch.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


_libc = None


def fs_type(path):
    """Name of the filesystem holding ``path`` (statfs f_type), e.g. ``ext4``, ``btrfs``."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buf = _Statfs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    magic = buf.f_type & 0xFFFFFFFF
    return FS_MAGIC.get(magic, "unknown (0x%x)" % magic)


def decide_direct_io(mode, backing_fs, force=False):
    """(direct_io wanted, reason). Refuses ``on`` where seed 003 says it corrupts."""
    if mode == "off":
        return False, "direct_io: off requested"
    if mode == "on":
        if backing_fs not in DIRECT_IO_FS and not force:
            raise Refusal(
                "direct_io: on refused: the backing file is on %s, where loop direct I/O is "
                "known to cause checksum errors (Btrfs) or is not supported; use direct_io: auto "
                "or off, or force: true if you know this filesystem handles it" % backing_fs)
        return True, "direct_io: on requested (backing filesystem %s)" % backing_fs
    if backing_fs in DIRECT_IO_FS:
        return True, "auto: %s supports direct I/O on loop devices" % backing_fs
    if backing_fs == "btrfs":
        return False, "auto: btrfs: loop direct I/O causes checksum errors (seed 003), so off"
    return False, "auto: %s is not known to be safe for loop direct I/O, so off" % backing_fs


class LoopSpec:
    """One declared loop device, validated."""

    __slots__ = ("file", "size", "state", "direct_io", "sector_size", "read_only", "force")

    def __init__(self, file, size=None, state="attached", direct_io="auto", sector_size=None,
                 read_only=False, force=False):
        if not file or not os.path.isabs(file):
            raise Refusal("file must be an absolute path, got %r" % (file,))
        if state not in STATES:
            raise Refusal("state must be one of %s, got %r" % (", ".join(STATES), state))
        if direct_io not in DIRECT_IO_MODES:
            raise Refusal("direct_io must be one of %s, got %r"
                          % (", ".join(DIRECT_IO_MODES), direct_io))
        if sector_size is not None and sector_size not in SECTOR_SIZES:
            raise Refusal("sector_size must be 512 or 4096, got %r" % (sector_size,))
        if size is not None and state != "attached":
            raise Refusal("%s: size only applies to state attached (it creates or grows the "
                          "backing file), not to state %s" % (file, state))
        self.file = os.path.normpath(file)
        self.size = parse_size(size) if size is not None else None
        self.state = state
        self.direct_io = direct_io
        self.sector_size = sector_size
        self.read_only = bool(read_only)
        self.force = bool(force)
        if self.size is not None and self.sector_size and self.size % self.sector_size:
            raise Refusal("%s: size %d is not a multiple of sector_size %d"
                          % (file, self.size, self.sector_size))


class ItemPlan:
    """The plan for one LoopSpec and what the result will look like."""

    def __init__(self, spec):
        self.spec = spec
        self.plan = Plan()
        self.backing_fs = None
        self.direct_io = None
        self.direct_io_reason = None
        self.matches = []
        self.before = {"state": "absent"}
        self.after = {}
        self.size_before = None


def _file_state(path):
    """stat of path (None when missing), refusing anything that is not a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Refusal("%s: cannot stat backing file: %s" % (path, exc.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise Refusal("%s exists and is not a regular file; loop_device only attaches "
                      "regular files" % path)
    return st


def _view(state, device=None, size=None, direct_io=None, sector_size=None, read_only=None):
    d = {"state": state}
    if device is not None:
        d["device"] = device
    if size is not None:
        d["size"] = size
    if direct_io is not None:
        d["direct_io"] = direct_io
    if sector_size is not None:
        d["sector_size"] = sector_size
    if read_only is not None:
        d["read_only"] = read_only
    return d


def plan_item(spec, attachments):
    """Decide what one spec needs, given the attachments read once for all specs."""
    ip = ItemPlan(spec)
    plan = ip.plan
    path = spec.file
    st = _file_state(path)
    parent = os.path.dirname(path)
    if st is None and spec.state == "attached":
        if spec.size is None:
            raise Refusal("%s does not exist; give size (e.g. 64M) to create it" % path)
        if not os.path.isdir(parent):
            raise Refusal("%s: parent directory %s does not exist" % (path, parent))
    ip.matches = [a for a in attachments if st is not None and a.backs(st)]
    ip.size_before = st.st_size if st is not None else None
    first = ip.matches[0] if ip.matches else None
    if first:
        ip.before = _view("attached", first.device, ip.size_before, first.direct_io,
                          first.sector_size, first.read_only)
    elif st is not None:
        ip.before = _view("detached", size=ip.size_before)

    if spec.state in ("detached", "absent"):
        for a in ip.matches if spec.state == "absent" else ():
            holder = in_use(a.device)
            if holder:
                raise Refusal("%s: %s is in use by %s; state absent never detaches a device in use "
                              "(the kernel would detach it later and the file would stay): close "
                              "what holds it first, or use state detached" % (path, a.device, holder))
        for a in ip.matches:
            plan.add("detach", a.device, "%s is attached to %s" % (path, a.device),
                     ["losetup", "--detach", a.device])
        if spec.state == "absent" and st is not None:
            plan.add("remove-file", path, "state absent removes the backing file")
            ip.after = {"state": "absent"}
        else:
            ip.after = _view("detached", size=ip.size_before) if st is not None else \
                {"state": "absent"}
        return ip

    # state == attached
    ip.backing_fs = fs_type(path if st is not None else parent)
    ip.direct_io, ip.direct_io_reason = decide_direct_io(spec.direct_io, ip.backing_fs,
                                                         spec.force)
    dio_arg = "--direct-io=%s" % ("on" if ip.direct_io else "off")
    size = ip.size_before
    if st is None:
        plan.add("create-file", path, "sparse file of %d bytes" % spec.size)
        size = spec.size
    elif spec.size is not None and spec.size < st.st_size:
        raise Refusal("%s is %d bytes; refusing to shrink it to %d (that would cut off data)"
                      % (path, st.st_size, spec.size))
    elif spec.size is not None and spec.size > st.st_size:
        plan.add("grow-file", path, "from %d to %d bytes" % (st.st_size, spec.size))
        size = spec.size
    if size is not None and spec.sector_size and size % spec.sector_size:
        plan.warn("%s: size %d is not a multiple of sector_size %d; the loop device ignores "
                  "the tail" % (path, size, spec.sector_size))

    if first is None:
        argv = ["losetup", "--find", "--show", dio_arg]
        if spec.sector_size:
            argv += ["--sector-size", str(spec.sector_size)]
        if spec.read_only:
            argv.append("--read-only")
        plan.add("attach", path, ip.direct_io_reason, argv + [path])
        ip.after = _view("attached", None, size, ip.direct_io,
                         spec.sector_size or 512, spec.read_only)
        return ip

    if len(ip.matches) > 1:
        plan.warn("%s is attached %d times (%s); managing %s" % (
            path, len(ip.matches), ", ".join(a.device for a in ip.matches), first.device))
    dev = first.device
    if first.read_only != spec.read_only:
        if not spec.force:
            raise Refusal(
                "%s is attached to %s %s; read_only cannot change on a live device: detach it "
                "first, or set force: true to detach and reattach" % (
                    path, dev, "read-only" if first.read_only else "read-write"))
        plan.add("detach", dev, "reattach to change read_only (force)",
                 ["losetup", "--detach", dev])
        argv = ["losetup", "--find", "--show", dio_arg,
                "--sector-size", str(spec.sector_size or first.sector_size)]
        if spec.read_only:
            argv.append("--read-only")
        plan.add("attach", path, "read_only %s" % spec.read_only, argv + [path])
        ip.after = _view("attached", None, size, ip.direct_io,
                         spec.sector_size or first.sector_size, spec.read_only)
        return ip
    if spec.size is not None and spec.size > ip.size_before:
        plan.add("set-capacity", dev, "backing file grew", ["losetup", "--set-capacity", dev])
    if spec.sector_size and spec.sector_size != first.sector_size:
        plan.add("set-sector-size", dev, "%d -> %d" % (first.sector_size, spec.sector_size),
                 ["losetup", "--sector-size", str(spec.sector_size), dev])
    if first.direct_io != ip.direct_io:
        plan.add("set-direct-io", dev, ip.direct_io_reason, ["losetup", dio_arg, dev])
    ip.after = _view("attached", dev, size, ip.direct_io,
                     spec.sector_size or first.sector_size, first.read_only)
    return ip


def _apply_item(runner, ip):
    for step in ip.plan.steps:
        if step.action == "create-file":
            fd = os.open(step.obj, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, ip.spec.size)
            finally:
                os.close(fd)
        elif step.action == "grow-file":
            os.truncate(step.obj, ip.spec.size)
        elif step.action == "remove-file":
            busy = [m.device for m in ip.matches if kernel_bound(m.device)]
            if busy:
                raise Refusal("%s: not removing the backing file: %s is still in use (the "
                              "kernel will detach it when it is closed)" % (step.obj, ", ".join(busy)))
            os.unlink(step.obj)
        else:
            runner.run(step.argv, changes=True)
            if step.action == "detach":
                still_bound([step.obj])


def converge(runner, specs):
    """Converge all specs with one state read before and one after. Returns a list of dicts.

    Every spec is planned (and so validated) before anything changes.
    """
    refuse_duplicates([s.file for s in specs], "file")
    before = read_attachments(runner)
    plans = [plan_item(spec, before) for spec in specs]
    if runner.check_mode or not any(ip.plan.steps for ip in plans):
        return [_report(ip, None) for ip in plans]
    apply_all(plans, lambda ip: _apply_item(runner, ip), lambda ip: ip.spec.file)
    after = read_attachments(runner)
    return [_report(ip, after) for ip in plans]


def _report(ip, after):
    """The result for one spec: the kernel's view after apply, or the plan in check mode."""
    spec = ip.spec
    res = {
        "file": spec.file,
        "state": spec.state,
        "changed": ip.plan.changed,
        "actions": ip.plan.as_list(),
        "warnings": ip.plan.warnings,
        "backing_fs": ip.backing_fs,
        "direct_io_reason": ip.direct_io_reason,
        "diff": {"before": ip.before, "after": ip.after},
    }
    if after is None:  # check mode or nothing to do: the plan is the answer
        view = ip.after
        res.update(device=view.get("device"), direct_io=view.get("direct_io"),
                   sector_size=view.get("sector_size"), read_only=view.get("read_only"),
                   size=view.get("size"), devices=[a.device for a in ip.matches])
        return res
    st = None
    if os.path.exists(spec.file):
        st = os.stat(spec.file)
    mine = [a for a in after if st is not None and a.backs(st)]
    busy = [a.device for a in after if a.device in {m.device for m in ip.matches}]
    if spec.state != "attached" and busy:
        ip.plan.warn("%s: %s is in use; the kernel will detach it when it is closed "
                     "(autoclear)" % (spec.file, ", ".join(busy)))
    if spec.state == "attached" and not mine:
        raise Refusal("%s: attach reported success but no loop device backs it" % spec.file)
    first = mine[0] if mine else None
    dio = kernel_direct_io(first.device) if first else None
    if first and dio is None:
        dio = first.direct_io
    if first and ip.direct_io and not dio:
        ip.plan.warn("%s: direct I/O was requested but the kernel kept it off on %s "
                     "(backing filesystem or sector size does not allow it)"
                     % (spec.file, first.device))
    res.update(device=first.device if first else None, direct_io=dio,
               sector_size=first.sector_size if first else None,
               read_only=first.read_only if first else None,
               size=st.st_size if st is not None else None,
               devices=[a.device for a in mine])
    ip.after = _view("attached", first.device, res["size"], dio, first.sector_size,
                     first.read_only) if first else ip.after
    res["diff"]["after"] = ip.after
    return res
