# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writing files the safe way, shared by key material and systemd units."""

from __future__ import annotations

import os
import stat
import tempfile


def write_atomic(path, data, mode=0o600):
    """Write ``data`` (bytes) to ``path`` via a temporary file of ``mode`` in the same directory,
    fsync, rename, fsync the directory: readers see the old file or the new one, never a part."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".blindvault-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory):
    """Make a rename or a new entry in ``directory`` durable."""
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def open_regular(path, limit=None):
    """``path`` opened for binary reading if it is a regular file (no symlink followed, no FIFO
    or device waited on) of at most ``limit`` bytes; raises ValueError naming what it is."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError("%s is not a regular file" % path)
    if limit is not None and st.st_size > limit:
        os.close(fd)
        raise ValueError("%s is %d bytes, more than the %d expected" % (path, st.st_size, limit))
    return os.fdopen(fd, "rb")
