# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_key's backend: load, unload and change the keys of encryption roots.

A key change is recorded as a generation label, ``blindvault:key-id``, set locally on the
root (safety rule R8): idempotence is by that label, never by comparing key material.
After a change the root's whole group gets one recursive snapshot: replicas are unsafe
until that group has been replicated again, root first (R1).
"""

from __future__ import annotations

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Plan, Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import (
    KEYFORMATS,
    check_key,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import KEY_ID, read_tree

UNSAFE = ("every replica of %s is unsafe until its whole group (the root and all its members) "
          "has been replicated again from one snapshot, root first (safety rule R1); "
          "blindvault.storage.zfs_replicate always sends it so")


def local_key_id(runner, name):
    """The key generation recorded on ``name`` itself (an inherited value does not count)."""
    out = runner.run(["zfs", "get", "-Hp", "-o", "value,source", KEY_ID, name]).stdout
    value, _tab, source = out.rstrip("\n").partition("\t")
    return value if source == "local" and value != "-" else None


def key_source(spec, prefix=""):
    """(``-L`` argument or None, stdin secret or None) for a ``key``/``key_file`` pair
    (``new_key``/``new_key_file`` with ``prefix="new_"``): a key goes on stdin, never in argv."""
    key, key_file = spec.get(prefix + "key"), spec.get(prefix + "key_file")
    if key is not None:
        return "prompt", key + "\n"
    if key_file:
        return "file://" + key_file, None
    return None, None


def validate(spec):
    name = spec["name"]
    new_options = ("new_key", "new_key_file", "new_keyformat", "new_keylocation", "pbkdf2iters")
    changing = any(spec.get(k) is not None for k in new_options)
    if spec.get("inherit") and changing:
        raise Refusal("%s: inherit joins the parent's encryption root; it takes no new key" % name)
    if changing and not spec.get("key_id"):
        raise Refusal("%s: a key change needs key_id, the label recorded as blindvault:key-id "
                      "that makes the change idempotent and lets replicas be checked" % name)
    if changing and spec.get("new_key") is None and not spec.get("new_key_file"):
        raise Refusal("%s: a key change needs new_key or new_key_file" % name)
    for prefix in ("", "new_"):
        if spec.get(prefix + "key") is not None and spec.get(prefix + "key_file"):
            raise Refusal("%s: give %skey or %skey_file, not both" % (name, prefix, prefix))
    if spec.get("pbkdf2iters") is not None and spec["pbkdf2iters"] < 100000:
        raise Refusal("%s: pbkdf2iters must be at least 100000" % name)
    return changing


def converge(runner, spec):
    name = spec["name"]
    changing = validate(spec)
    tree = read_tree(runner, [name], recursive=True)
    ds = tree.get(name)
    if ds is None:
        raise Refusal("%s does not exist" % name)
    if not ds.encrypted:
        raise Refusal("%s is not encrypted" % name)
    plan = Plan()
    result = {"name": name, "propagation_snapshot": None, "key_id": None}
    was_available = ds["keystatus"] == "available"
    loaded_by_us = False

    def need_loaded(reason):
        nonlocal loaded_by_us
        if was_available or loaded_by_us:
            return
        location, secret = key_source(spec)
        if location is None and not (ds["keylocation"] or "").startswith("file://"):
            raise Refusal("%s: the key is not loaded and %s; give key or key_file" % (name, reason))
        argv = ["zfs", "load-key"] + (["-L", location] if location else []) + [name]
        plan.add("load-key", name, reason, argv, secret)
        loaded_by_us = True

    if spec.get("inherit"):
        parent = name.rsplit("/", 1)[0]
        if not ds.is_encryption_root:
            result["key_id"] = ds[KEY_ID]
        else:
            held = list(tree.replication_holds(name))
            if held and not spec.get("force"):
                raise Refusal(
                    "%s: replication holds exist (%s): change-key -i makes this dataset part of its "
                    "parent's encryption root, a structure change every replica must be re-seeded "
                    "for; set force: true to do it anyway" % (name, ", ".join(sorted(held)[:5])))
            need_loaded("change-key -i needs it")
            plan.add("change-key", name, "inherit the parent's key (change-key -i)",
                     ["zfs", "change-key", "-i", name])
            plan.add("inherit", name, "take the parent's key generation",
                     ["zfs", "inherit", KEY_ID, name])
            result["parent"] = parent
    elif changing:
        if not ds.is_encryption_root:
            raise Refusal("%s is not an encryption root (its root is %s); change the key there"
                          % (name, ds.encryptionroot))
        current = local_key_id(runner, name)
        result["key_id"] = current
        if current != spec["key_id"]:
            keyformat = spec.get("new_keyformat") or ds["keyformat"]
            if keyformat not in KEYFORMATS:
                raise Refusal("%s: new_keyformat must be one of %s" % (name, ", ".join(KEYFORMATS)))
            if spec.get("new_key") is not None:
                if keyformat == "raw":
                    raise Refusal("%s: a raw key must come from new_key_file" % name)
                check_key(name, keyformat, spec["new_key"])
            if spec.get("pbkdf2iters") and keyformat != "passphrase":
                raise Refusal("%s: pbkdf2iters only applies to keyformat passphrase" % name)
            need_loaded("changing the key needs the current one")
            location, secret = key_source(spec, "new_")
            argv = ["zfs", "change-key", "-o", "keyformat=" + keyformat, "-o",
                    "keylocation=" + location]
            if spec.get("pbkdf2iters"):
                argv += ["-o", "pbkdf2iters=%d" % spec["pbkdf2iters"]]
            plan.add("change-key", name, "key generation %s -> %s" % (current, spec["key_id"]),
                     argv + [name], secret)
            if spec.get("new_keylocation") and spec["new_keylocation"] != location:
                plan.add("set-keylocation", name, spec["new_keylocation"],
                         ["zfs", "set", "keylocation=" + spec["new_keylocation"], name])
            plan.add("record", name, "blindvault:key-id=%s" % spec["key_id"],
                     ["zfs", "set", "%s=%s" % (KEY_ID, spec["key_id"]), name])
            snap = "%s@blindvault-key-%s" % (name, spec["key_id"])
            if snap not in tree:
                plan.add("snapshot", snap, "one atomic snapshot of the whole group to replicate",
                         ["zfs", "snapshot", "-r", snap])
            result["propagation_snapshot"] = snap
            result["key_id"] = spec["key_id"]
            result["replicas_unsafe"] = UNSAFE % name
            plan.warn(UNSAFE % name)

    want = spec.get("state")
    if want == "loaded":
        need_loaded("state loaded")
    elif want == "unloaded" or (loaded_by_us and want is None):
        if was_available or loaded_by_us:
            mounted = [d.name for d in tree.datasets
                       if d.encryptionroot == name and d["mounted"] == "yes"]
            for m in sorted(mounted, key=lambda n: -n.count("/")):
                plan.add("unmount", m, "unload-key needs the group unmounted", ["zfs", "unmount", m])
            plan.add("unload-key", name, "state unloaded" if want else
                     "restore: the key was not loaded before", ["zfs", "unload-key", name])
    if plan.steps and not runner.check_mode:
        for step in plan.steps:
            runner.run(step.argv, changes=True, secret=step.secret)
    final = "available" if (want == "loaded" or (was_available and want != "unloaded")) \
        else "unavailable"
    result.update(changed=plan.changed, actions=plan.as_list(), warnings=plan.warnings,
                  keystatus=final)
    return result
