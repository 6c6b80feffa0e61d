# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Key-less hazard checks: pure functions from Trees to hazards.

A child is unwrapped with its encryption root's wrapping key. After a key change, a raw
send of the child alone (or of the root alone) leaves a replica whose child needs a key
its root does not have: "Permission denied" on load, found only when someone needs the
data. Without any key, ZFS shows this when the wrapping parameters differ:

* ``keyformat``: the child's keyformat differs from its root's;
* ``pbkdf2``: the child's pbkdf2salt or pbkdf2iters differ (a passphrase was changed);
* ``key-id``: the child's recorded ``blindvault:key-id`` differs from its root's
  (replicas written by this collection record the generation on every dataset);
* ``structure``: compared with its source, a dataset is its own encryption root on one
  side and not on the other.

Blind spot: hex->hex and raw->raw changes made by other tools, and ``change-key -i``
through bare child-only sends, leave these properties equal. Only loading the key and
reading (zfs_verify) proves a replica.
"""

from __future__ import annotations

from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import KEY_ID


def hazard(dataset, encryptionroot, reason, detail):
    return {"dataset": dataset, "encryptionroot": encryptionroot, "reason": reason,
            "detail": detail}


def tree_hazards(tree):
    """Hazards visible in one tree without keys: members whose wrapping differs from the root's."""
    found = []
    for d in tree.datasets:
        if not d.encrypted or not d.encryptionroot or d.is_encryption_root:
            continue
        root = tree.get(d.encryptionroot)
        if root is None:
            continue  # the root is outside what was read
        if d["keyformat"] != root["keyformat"]:
            found.append(hazard(d.name, root.name, "keyformat",
                                "keyformat %s differs from its encryption root's %s: the root's key "
                                "cannot unlock it" % (d["keyformat"], root["keyformat"])))
        elif (d["pbkdf2salt"], d["pbkdf2iters"]) != (root["pbkdf2salt"], root["pbkdf2iters"]):
            found.append(hazard(d.name, root.name, "pbkdf2",
                                "pbkdf2 salt/iterations (%s/%s) differ from its encryption root's "
                                "(%s/%s): the root's passphrase cannot unlock it" % (
                                    d["pbkdf2salt"], d["pbkdf2iters"],
                                    root["pbkdf2salt"], root["pbkdf2iters"])))
        elif d[KEY_ID] is not None and root[KEY_ID] is not None and d[KEY_ID] != root[KEY_ID]:
            found.append(hazard(d.name, root.name, "key-id",
                                "recorded key generation %s differs from its encryption root's %s"
                                % (d[KEY_ID], root[KEY_ID])))
    return found


def compare_hazards(source, source_top, target, target_top):
    """Compare target_top's tree with the source it replicates (same paths below the tops).

    ``structure``: a dataset is an encryption root on one side and not on the other, so key
    changes of the source root cannot reach it.
    ``key-id``: a target encryption root records another key generation than its source:
    the replica is behind a key change until the whole group is replicated again.
    """
    found = []
    for t in target.datasets:
        if t.name != target_top and not t.name.startswith(target_top + "/"):
            continue
        s = source.get(source_top + t.name[len(target_top):])
        if s is None or not (s.encrypted and t.encrypted):
            continue
        if s.is_encryption_root != t.is_encryption_root:
            found.append(hazard(
                t.name, t.encryptionroot, "structure",
                "%s on the target but %s on the source %s: key changes of the source root will "
                "not reach it; re-seed the group from %s with a recursive raw send (-R)" % (
                    _layout(t), _layout(s), s.name, s.encryptionroot)))
        elif t.is_encryption_root and s[KEY_ID] is not None and t[KEY_ID] != s[KEY_ID]:
            found.append(hazard(
                t.name, t.name, "key-id",
                "records key generation %s while its source %s is at %s: replicate the whole "
                "group (root first) before relying on this replica" % (t[KEY_ID], s.name, s[KEY_ID])))
    return found


def _layout(d):
    return "its own encryption root" if d.is_encryption_root else \
        "under encryption root %s" % d.encryptionroot
