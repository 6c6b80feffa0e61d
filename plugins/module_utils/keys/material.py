# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""encryption_key's backend: generate key material, write it 0600 atomically, escrow it.

Key files hold exactly the key, no trailing newline, in the forms ZFS and cryptsetup read:
``hex`` (2 x length hexadecimal characters: ZFS keyformat=hex wants 64), ``raw`` (length
random bytes: ZFS keyformat=raw wants 32) or ``passphrase`` (URL-safe random text).
An existing key file is never overwritten unless forced: losing it loses the data.
"""

from __future__ import annotations

import os
import secrets
import string

from ansible_collections.blindvault.storage.plugins.module_utils.files import write_atomic
from ansible_collections.blindvault.storage.plugins.module_utils.keys import age
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Plan, Refusal, refuse_duplicates

FORMATS = ("hex", "raw", "passphrase")


def generate(fmt, length):
    if fmt == "hex":
        return secrets.token_hex(length).encode()
    if fmt == "raw":
        return os.urandom(length)
    return secrets.token_urlsafe(length).encode()


def problem(fmt, length, data):
    """Why ``data`` is not a key of this format and length (None if it is)."""
    if fmt == "raw":
        return None if len(data) == length else "holds %d bytes, not %d" % (len(data), length)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return "is not text"
    if fmt == "hex":
        if len(text) != 2 * length or any(c not in string.hexdigits for c in text):
            return "is not %d hexadecimal characters" % (2 * length)
        return None
    if not 8 <= len(text) <= 512 or not text.isprintable():
        return "is not a passphrase of 8 to 512 printable characters"
    return None


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _recipients_file(escrow_path):
    return escrow_path + ".recipients"


def converge(spec, check_mode, real_run=None):
    """spec: dict with path, format, length, escrow_recipients, escrow_path, force.
    ``real_run``: this check-mode pass plans a real run (a missing directory is refused);
    by default only a check-mode run tolerates one."""
    path, fmt, length = spec["path"], spec["format"], spec["length"]
    recipients = sorted(spec.get("escrow_recipients") or [])
    escrow_path = spec.get("escrow_path") or (path + ".age" if recipients else None)
    for r in recipients:
        try:
            age.parse_recipient(r)
        except age.RecipientError as exc:
            raise Refusal("escrow_recipients: %s" % exc) from None
    if recipients and not age.HAS_CRYPTOGRAPHY:
        raise Refusal("escrow needs the Python cryptography package on the managed host")
    directory = os.path.dirname(path)
    # Check mode plans a key whose directory an earlier task of the same run would create (a
    # role's `file: state=directory` is only planned too); a real run refuses it.
    no_directory = not os.path.isdir(directory)
    if no_directory and (not check_mode if real_run is None else real_run):
        raise Refusal("%s: directory %s does not exist" % (path, directory))
    if os.path.lexists(path) and not os.path.isfile(path):
        raise Refusal("%s exists and is not a regular file" % path)

    plan = Plan()
    exists = os.path.isfile(path)
    key = _read(path) if exists else None
    if exists:
        why = problem(fmt, length, key)
        if why and not spec["force"]:
            raise Refusal("%s exists but %s (format %s); it is kept. Set force: true to replace "
                          "it, knowing that whatever it encrypts is lost" % (path, why, fmt))
    if not exists or spec["force"]:
        plan.add("generate", path, "force: replace the existing key" if exists else
                 "no key yet" + (" (its directory does not exist yet)" if no_directory else ""))
        key = None  # generated at apply time, never in check mode
    if escrow_path:
        recorded = None
        if os.path.isfile(_recipients_file(escrow_path)):
            recorded = _read(_recipients_file(escrow_path)).decode().split()
        if plan.steps or not os.path.isfile(escrow_path) or recorded != recipients:
            plan.add("escrow", escrow_path, "age-encrypted copy for %d recipient(s)"
                     % len(recipients))
    before = {"exists": exists, "escrow_recipients": None}
    if escrow_path and os.path.isfile(_recipients_file(escrow_path)):
        before["escrow_recipients"] = _read(_recipients_file(escrow_path)).decode().split()
    after = {"exists": True, "escrow_recipients": recipients or before["escrow_recipients"]}

    if plan.steps and not check_mode:
        for step in plan.steps:
            if step.action == "generate":
                key = generate(fmt, length)
                write_atomic(path, key)
            elif step.action == "escrow":
                write_atomic(escrow_path, age.encrypt(key, recipients))
                write_atomic(_recipients_file(escrow_path), ("\n".join(recipients) + "\n").encode(),
                             0o644)
    return {
        "path": path,
        "format": fmt,
        "changed": plan.changed,
        "generated": any(s.action == "generate" for s in plan.steps),
        "escrow_path": escrow_path,
        "escrow_recipients": recipients,
        "actions": plan.as_list(),
        "diff": {"before": before, "after": after},
    }


def converge_many(specs, check_mode):
    """Every key of a list form: all planned (and refused, if any is wrong) before any file
    is written, then applied in order."""
    paths = [os.path.normpath(s["path"]) for s in specs]
    refuse_duplicates(paths, "key file")
    escrows = [os.path.normpath(s["escrow_path"] or s["path"] + ".age") for s in specs
               if s.get("escrow_recipients")]
    refuse_duplicates(escrows + [p for p in paths if p in escrows], "escrow or key file")
    planned = [converge(spec, True, real_run=not check_mode) for spec in specs]
    if check_mode:
        return planned
    return [converge(spec, False) if plan["changed"] else plan
            for spec, plan in zip(specs, planned)]
