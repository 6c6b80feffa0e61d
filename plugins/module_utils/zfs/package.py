# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stream packages: a group's ``zfs send`` streams as age files plus one signed manifest.

A package is a directory ``<directory>/<name>/`` holding ``NN-<dataset>.zfs.age`` (one file per
stream, in receive order: the encryption root's first) and ``manifest.json``, an Ed25519-signed
envelope (:mod:`..keys.signing`) that names every file with its size and sha256, the datasets,
base and snapshot guids it carries. It is written under ``.<name>.partial-*`` and renamed when
complete, so a torn package never looks like one.

Receiving checks the signature and every file's hash **before any byte reaches** ``zfs recv``
(an ``-I`` stream commits each snapshot as it goes), then decrypts file by file. The manifest
also signs each file's age header and payload nonce (``header_sha256``), which fix the payload
key, so every chunk decrypted is one the sender wrote: a file swapped after the check is refused
at its header, before a byte is received, and a cut one fails at the cut. ``zfs recv`` leaving
before the end of its input fails the receive too.

No plaintext touches a disk: ``zfs send`` is read through a pipe into the age writer, and the
age reader feeds ``zfs recv``'s stdin.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional

from ..files import fsync_dir, open_regular, write_atomic
from ..keys import age, signing
from . import sendstream

FORMAT = "blindvault-zfs-stream-package/1"
MANIFEST = "manifest.json"
MANIFEST_LIMIT = 16 << 20
PACKAGE_NAME = re.compile(r"^[A-Za-z0-9_.:@%+-]+$")


class PackageError(ValueError):
    """A package that must not be received (the message says which file and why).
    ``foreign``: the file is not for this site at all (another recipient's, not an age file)."""

    foreign = False


@dataclass
class StreamSpec:
    """One stream to write: the ``zfs send`` argv and what it carries (from the planner)."""

    send: List[str]
    kind: str  # full | incremental | group
    datasets: List[str]
    snapshot: str  # short name sent up to
    guids: dict = field(default_factory=dict)  # dataset -> guid of its snapshot
    base: Optional[str] = None  # short name of the base snapshot/bookmark (incremental)
    base_guid: Optional[str] = None
    key_id: Optional[str] = None  # the group's key generation (blindvault:key-id), if any


def file_name(index, dataset):
    """``03-tank%vault%docs.zfs.age``: the order, then the dataset with ``/`` as ``%``."""
    return "%02d-%s.zfs.age" % (index, re.sub(r"[^A-Za-z0-9_.:/-]", "_", dataset).replace("/", "%"))


class _HashingWriter:
    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data):
        self.f.write(data)
        self.sha.update(data)
        self.bytes += len(data)


def write_package(runner, directory, name, streams, recipients, signing_key, info, now=None):
    """Write ``streams`` as package ``name`` under ``directory``; return the manifest (a dict).

    ``signing_key``: an Ed25519 private key object; ``info``: extra manifest fields (group,
    target_id, source host...). Refuses to overwrite an existing package."""
    if not PACKAGE_NAME.match(name):
        raise PackageError("package name %r has characters outside [A-Za-z0-9_.:@%%+-]" % name)
    final = os.path.join(directory, name)
    if os.path.lexists(final):
        raise PackageError("%s already exists: a package is never overwritten" % final)
    tmp = tempfile.mkdtemp(prefix=".%s.partial-" % name, dir=directory)
    try:
        entries = []
        for i, spec in enumerate(streams):
            fname = file_name(i, spec.datasets[0])
            with open(os.path.join(tmp, fname), "xb") as f:
                hashed = _HashingWriter(f)
                sealer = age.Writer(hashed, recipients)
                piped = runner.pipeline([spec.send], sink=sealer.write)
                sealer.close()
                f.flush()
                os.fsync(f.fileno())
            entries.append({
                "file": fname, "kind": spec.kind, "datasets": list(spec.datasets),
                "send": " ".join(spec.send), "snapshot": spec.snapshot, "guids": dict(spec.guids),
                "base": spec.base, "base_guid": spec.base_guid, "key_id": spec.key_id,
                "stream_bytes": piped.out_bytes, "bytes": hashed.bytes, "sha256": hashed.sha.hexdigest(),
                "header_sha256": sealer.header_sha256,
            })
        manifest = dict(info, format=FORMAT, streams=entries,
                        created=(now or datetime.datetime.now(datetime.timezone.utc)).isoformat())
        envelope = signing.sign(manifest, signing_key)
        write_atomic(os.path.join(tmp, MANIFEST), (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode(),
                     mode=0o644)
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(directory)
    return manifest


def list_packages(directory):
    """Complete packages (directories with a manifest) under ``directory``, sorted by name;
    partial ones (``.*.partial-*``) are never listed."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    return [n for n in names if not n.startswith(".")
            and os.path.isfile(os.path.join(directory, n, MANIFEST))]


def open_package(path, trusted):
    """The verified manifest of the package at ``path``: signed by one of ``trusted`` (public
    keys), its format known, every file it names present with the signed size and sha256, and
    no stream file it does not name. Reads every file once; nothing is received."""
    manifest = read_manifest(path, trusted)
    check_files(path, manifest)
    return manifest


def read_manifest(path, trusted):
    """The manifest of the package at ``path`` once its signature is checked (files unread)."""
    try:
        with open_regular(os.path.join(path, MANIFEST), MANIFEST_LIMIT) as f:
            envelope = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise PackageError("%s has no %s (not a package, or a torn one)" % (path, MANIFEST)) from None
    except (ValueError, RecursionError) as e:
        raise PackageError("%s/%s is not a manifest (%s)" % (path, MANIFEST, e)) from None
    except OSError as e:
        raise PackageError("%s/%s cannot be read: %s" % (path, MANIFEST, e.strerror or e)) from None
    try:
        manifest = signing.verify(envelope, trusted)
    except signing.SignatureError as e:
        raise PackageError("%s: %s" % (path, e)) from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("streams"), list) \
            or not manifest["streams"]:
        raise PackageError("%s: unknown manifest format %r" % (path, manifest.get("format")))
    return manifest


def check_files(path, manifest):
    """Every stream file the manifest names is there with its signed size and sha256, and no
    other stream file is."""
    named = set()
    for entry in manifest["streams"]:
        fname = entry.get("file")
        if not isinstance(fname, str) or os.path.basename(fname) != fname or fname.startswith("."):
            raise PackageError("%s: the manifest names a file outside the package: %r" % (path, fname))
        named.add(fname)
        digest, size = _hash_file(os.path.join(path, fname), path, entry.get("bytes"))
        if size != entry.get("bytes") or digest != entry.get("sha256"):
            raise PackageError("%s/%s does not match its signed sha256 and size (%d bytes, "
                               "signed %s): damaged or altered; nothing was received"
                               % (path, fname, size, entry.get("bytes")))
    extra = sorted(n for n in os.listdir(path) if n.endswith(".zfs.age") and n not in named)
    if extra:
        raise PackageError("%s holds stream files the manifest does not name: %s" % (path, ", ".join(extra)))


def _open_stream_file(fpath, path, size=None):
    try:
        return open_regular(fpath, size if isinstance(size, int) else None)
    except FileNotFoundError:
        raise PackageError("%s: %s is missing" % (path, os.path.basename(fpath))) from None
    except (OSError, ValueError) as e:
        raise PackageError("%s: %s" % (path, getattr(e, "strerror", None) or e)) from None


def _hash_file(fpath, path, size=None):
    """(sha256, size) of a stream file: a regular file, no larger than its signed size."""
    sha, got = hashlib.sha256(), 0
    with _open_stream_file(fpath, path, size) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            got += len(block)
    return sha.hexdigest(), got


class _HashingReader:
    """A binary file that hashes what is read from it (for age.Reader)."""

    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()

    def read(self, n=-1):
        data = self.f.read(n)
        self.sha.update(data)
        return data

    def readline(self, limit=-1):
        data = self.f.readline(limit)
        self.sha.update(data)
        return data


def open_stream(path, entry, identities):
    """An age.Reader over one stream file whose header is the one the manifest signed (the
    identity is proven to open it); check mode stops here."""
    if not isinstance(entry.get("header_sha256"), str):
        raise PackageError("%s: the manifest signs no age header for %s" % (path, entry.get("file")))
    f = _open_stream_file(os.path.join(path, entry["file"]), path, entry.get("bytes"))
    hashed = _HashingReader(f)
    try:
        return f, hashed, age.Reader(hashed, identities, header_sha256=entry["header_sha256"])
    except age.AgeFileError as e:
        f.close()
        raise PackageError("%s: %s" % (entry["file"], e)) from None


def _checked_plaintext(f, hashed, reader, entry):
    """Decrypted chunks; the last one only after the whole file matched its signed hash."""
    held = None
    try:
        for chunk in reader:
            if held is not None:
                yield held
            held = chunk
    except age.AgeFileError as e:
        raise PackageError("%s: %s" % (entry["file"], e)) from None
    hashed.read()  # nothing should be left; if something is, the hash says so
    if hashed.sha.hexdigest() != entry["sha256"]:
        raise PackageError("%s changed after it was checked: the receive was stopped before its end"
                           % entry["file"])
    if held:
        yield held


def receive_stream(runner, path, entry, identities, recv_argv):
    """Decrypt one stream file of a checked package into ``recv_argv`` (``zfs recv ...``)."""
    f, hashed, reader = open_stream(path, entry, identities)
    with f:
        return runner.pipeline([recv_argv], changes=True, source=_checked_plaintext(f, hashed, reader, entry))


# Unsigned streams (``zfs send -w -R ROOT@snap | age -r ...``), only with allow_unsigned.

UNSIGNED_SUFFIX = ".age"


def list_unsigned(directory):
    """Names of the age files directly in ``directory`` (not in a package, not hidden)."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    return [n for n in names if n.endswith(UNSIGNED_SUFFIX) and not n.startswith(".")
            and os.path.isfile(os.path.join(directory, n))]


def read_unsigned_header(directory, fname, identities):
    """The :class:`.sendstream.Header` of the stream in the age file ``fname``: only its first
    records are decrypted."""
    f = _open_stream_file(os.path.join(directory, fname), directory)
    with f:
        try:
            buf = bytearray()
            for chunk in age.Reader(f, identities):
                buf += chunk
                if len(buf) >= sendstream.needed(buf):
                    break
            return sendstream.read_header(bytes(buf))
        except age.AgeFileError as e:
            err = PackageError("%s: %s" % (fname, e))
            err.foreign = isinstance(e, age.NotForUs)
            raise err from None
        except sendstream.StreamFormatError as e:
            raise PackageError("%s: %s" % (fname, e)) from None


def check_unsigned(directory, entry, identities):
    """Decrypt the whole unsigned file once (every age chunk authenticated, nothing received)
    and record its sha256, size and header in ``entry``, so the receive can insist on the very
    bytes checked (:func:`receive_stream`)."""
    f = _open_stream_file(os.path.join(directory, entry["file"]), directory)
    with f:
        hashed = _HashingReader(f)
        try:
            reader = age.Reader(hashed, identities)
            for _chunk in reader:
                pass
        except age.AgeFileError as e:
            raise PackageError("%s: %s" % (entry["file"], e)) from None
        hashed.read()
        entry.update(sha256=hashed.sha.hexdigest(), bytes=f.tell(),
                     header_sha256=reader.header_sha256)
