# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_dataset's backend: declared datasets -> one state read -> a plan -> apply.

Costs: one ``zfs list`` of the pools involved (filesystems and volumes only), plus one
``zfs list`` of snapshots (and one ``zfs holds``) only when something is to be destroyed;
then one ``zfs create`` per new dataset, one ``zfs set`` per distinct set of property
changes (``zfs set a=1 b=2 ds1 ds2 ...``), one ``zfs destroy`` per removed dataset, and one
read-back when anything changed.
"""

from __future__ import annotations

import re
import string

from ansible_collections.blindvault.storage.plugins.module_utils.plan import (
    Plan,
    Refusal,
    refuse_duplicates,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import read_tree

ENCRYPTION_SUITES = ("off", "on", "aes-128-ccm", "aes-192-ccm", "aes-256-ccm",
                     "aes-128-gcm", "aes-192-gcm", "aes-256-gcm")
KEYFORMATS = ("passphrase", "hex", "raw")
# Set only at creation; a different declared value on an existing dataset is an error.
CREATE_ONLY = ("casesensitivity", "normalization", "utf8only", "volblocksize")
# Managed through their own options (and zfs_key), never through ``properties``.
KEY_PROPERTIES = ("encryption", "keyformat", "keylocation", "pbkdf2iters", "encryptionroot",
                  "keystatus", "pbkdf2salt")
SIZE_PROPERTIES = ("quota", "refquota", "reservation", "refreservation", "volsize",
                   "recordsize", "volblocksize", "special_small_blocks")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:i?B)?\s*$", re.IGNORECASE)


def zfs_size(value):
    """ZFS size syntax (binary units: 1K = 1024) to bytes; ``none`` -> 0 as ``zfs list -p`` shows."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() == "none":
        return 0
    m = _SIZE.match(text)
    if not m:
        raise Refusal("%r is not a ZFS size (e.g. 10G, 512K, none)" % (value,))
    return int(float(m.group(1)) * 1024 ** " KMGTPE".index(m.group(2).upper() or " "))


def normalize(prop, value):
    """A declared property value the way ``zfs list -Hp`` prints it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if prop in SIZE_PROPERTIES:
        return str(zfs_size(value))
    return str(value)


# ZFS's own characters (zfs_namecheck.c) less the space, which we refuse: names travel
# through shells, unit files and logs.
_COMPONENT = re.compile(r"^[A-Za-z0-9_.:-]+$")


def valid_component(part):
    """One part of a dataset name, or a snapshot's or bookmark's short name."""
    return bool(_COMPONENT.match(part or "")) and part not in (".", "..")


def valid_name(name):
    """A dataset name: parts of ZFS's characters (no space), no ``.``/``..`` part, < 256 bytes,
    starting with a letter as a pool name must (so it can never be read as a command option)."""
    return bool(name) and name[0].isalpha() and len(name) < 256 \
        and all(valid_component(p) for p in name.split("/"))


class DatasetSpec:
    """One declared dataset, validated without looking at the system."""

    def __init__(self, name, state="present", type="filesystem", volsize=None, properties=None,
                 encryption=None, keyformat=None, keylocation=None, key=None, key_file=None,
                 pbkdf2iters=None, recursive=False, force=False):
        if not valid_name(name):
            raise Refusal("%r is not a dataset name (pool/path, without @ or #)" % (name,))
        self.name = name
        self.state = state
        self.type = type
        self.volsize = str(zfs_size(volsize)) if volsize is not None else None
        if encryption in ("True", "False"):  # YAML's unquoted on/off
            encryption = "on" if encryption == "True" else "off"
        if encryption is not None and encryption not in ENCRYPTION_SUITES:
            raise Refusal("%s: encryption must be one of %s, got %r"
                          % (name, ", ".join(ENCRYPTION_SUITES), encryption))
        self.encryption = encryption
        self.keyformat = keyformat
        self.keylocation = keylocation
        self.key = key
        self.key_file = key_file
        self.pbkdf2iters = pbkdf2iters
        self.recursive = recursive
        self.force = force
        props = dict(properties or {})
        for p in props:
            if p in KEY_PROPERTIES:
                raise Refusal("%s: set %s with the %s option, not in properties"
                              % (name, p, p if p in ("encryption", "keyformat", "keylocation",
                                                     "pbkdf2iters") else "zfs_key module"))
            if p in ("volsize", "type"):
                raise Refusal("%s: set %s with its own option, not in properties" % (name, p))
        self.properties = {p: normalize(p, v) for p, v in props.items()}
        self._check()

    def _check(self):
        n = self.name
        if self.type == "volume" and self.state == "present" and self.volsize is None:
            raise Refusal("%s: type volume needs volsize" % n)
        if self.type != "volume" and self.volsize is not None:
            raise Refusal("%s: volsize only applies to type volume" % n)
        if self.key is not None and self.key_file:
            raise Refusal("%s: give key or key_file, not both" % n)
        new_root = self.encryption not in (None, "off")
        if (self.key is not None or self.key_file or self.keyformat) and not new_root:
            raise Refusal("%s: key, key_file and keyformat create an encryption root: set "
                          "encryption (e.g. aes-256-gcm)" % n)
        if new_root and not self.keyformat:
            raise Refusal("%s: encryption needs keyformat (passphrase, hex or raw)" % n)
        if self.pbkdf2iters is not None:
            if self.keyformat != "passphrase":
                raise Refusal("%s: pbkdf2iters only applies to keyformat passphrase" % n)
            if self.pbkdf2iters < 100000:
                raise Refusal("%s: pbkdf2iters must be at least 100000" % n)
        if self.key is not None:
            check_key(n, self.keyformat, self.key)
        if self.keyformat == "raw" and self.key is not None:
            raise Refusal("%s: a raw (32-byte binary) key must come from key_file" % n)

    @property
    def watched(self):
        """The properties shown in this dataset's diff."""
        return list(self.properties) + (["volsize"] if self.type == "volume" else [])

    @property
    def pool(self):
        return self.name.split("/", 1)[0]

    @property
    def parent(self):
        return self.name.rsplit("/", 1)[0] if "/" in self.name else None


def check_key(name, keyformat, key):
    if keyformat == "passphrase" and not 8 <= len(key) <= 512:
        raise Refusal("%s: a passphrase must be 8 to 512 characters" % name)
    if keyformat == "hex" and (len(key) != 64 or any(c not in string.hexdigits for c in key)):
        raise Refusal("%s: a hex key must be 64 hexadecimal characters" % name)


class DatasetPlan:
    def __init__(self, spec):
        self.spec = spec
        self.plan = Plan()
        self.before = {"state": "absent"}
        self.after = {"state": "absent"}
        self.set = {}


def _view(d, props):
    if d is None:
        return {"state": "absent"}
    view = {"state": "present", "type": d.type}
    for p in props:
        view[p] = d[p]
    if d.encrypted:
        view["encryption"] = d["encryption"]
        view["encryptionroot"] = d.encryptionroot
    return view


def _extra_properties(specs):
    props = []
    for s in specs:
        for p in list(s.properties) + ["volsize", "volblocksize"]:
            if p not in props:
                props.append(p)
    return props


def plan_dataset(spec, tree, created):
    """Plan one spec against the tree; ``created`` holds names this run will create first."""
    dp = DatasetPlan(spec)
    cur = tree.get(spec.name)
    dp.before = _view(cur, spec.watched)
    if spec.state == "absent":
        if cur is None:
            return dp
        if "/" not in spec.name:
            raise Refusal("%s is a pool's root dataset; remove pools with zfs_pool" % spec.name)
        below = tree.children(spec.name) + tree.snapshots_of(spec.name) + \
            [s for c in tree.children(spec.name) for s in tree.snapshots_of(c.name)]
        if below and not spec.recursive:
            raise Refusal("%s has %d descendant(s) (%s); set recursive: true to destroy them too"
                          % (spec.name, len(below), ", ".join(d.name for d in below[:5])))
        held = tree.replication_holds(spec.name)
        if held and not spec.force:
            raise Refusal("%s: snapshots carry replication holds (%s): they are the last common "
                          "base of a replica; set force: true to release them and destroy"
                          % (spec.name, ", ".join(sorted(held))))
        for snap, tags in sorted(held.items()):
            for tag in tags:
                dp.plan.add("release", snap, "force: drop hold %s" % tag,
                            ["zfs", "release", tag, snap])
        argv = ["zfs", "destroy"] + (["-r"] if below else []) + [spec.name]
        dp.plan.add("destroy", spec.name, "state absent", argv)
        return dp

    if cur is None:
        if spec.parent and spec.parent not in tree and spec.parent not in created:
            raise Refusal("%s: parent %s does not exist; declare it too (parents are created "
                          "first) or create it before" % (spec.name, spec.parent))
        if spec.encryption not in (None, "off") and spec.key is None and not spec.key_file \
                and not (spec.keylocation or "").startswith("file://"):
            raise Refusal("%s: a new encryption root needs its key: give key, key_file or a "
                          "file:// keylocation" % spec.name)
        dp.plan.add("create", spec.name, "does not exist", create_argv(spec),
                    secret=None if spec.key is None else spec.key + "\n")
        dp.after = {"state": "present", "type": spec.type}
        dp.after.update(spec.properties)
        if spec.volsize:
            dp.after["volsize"] = spec.volsize
        if spec.encryption not in (None, "off"):
            dp.after.update(encryption=spec.encryption, encryptionroot=spec.name)
        created.add(spec.name)
        return dp

    if cur.type != spec.type:
        raise Refusal("%s exists as a %s, not a %s" % (spec.name, cur.type, spec.type))
    _check_create_only(spec, cur)
    changes = {p: v for p, v in spec.properties.items()
               if p not in CREATE_ONLY and str(cur[p]) != v}
    if spec.volsize and str(cur["volsize"]) != spec.volsize:
        if int(spec.volsize) < int(cur["volsize"] or 0) and not spec.force:
            raise Refusal("%s: shrinking volsize from %s to %s destroys data at the end of the "
                          "volume; set force: true if that is intended"
                          % (spec.name, cur["volsize"], spec.volsize))
        changes["volsize"] = spec.volsize
    if spec.keylocation and cur.is_encryption_root and cur["keylocation"] != spec.keylocation:
        changes["keylocation"] = spec.keylocation
    dp.set = changes
    dp.after = dict(dp.before, **changes)
    return dp


def _check_create_only(spec, cur):
    wrong = []
    for p in CREATE_ONLY:
        if p in spec.properties and str(cur[p]) != spec.properties[p]:
            wrong.append("%s is %s, declared %s" % (p, cur[p], spec.properties[p]))
    if spec.encryption is not None:
        if spec.encryption == "off" and cur.encrypted:
            wrong.append("encryption is %s, declared off" % cur["encryption"])
        elif spec.encryption not in ("off", "on") and cur["encryption"] != spec.encryption:
            wrong.append("encryption is %s, declared %s" % (cur["encryption"], spec.encryption))
        elif spec.encryption == "on" and not cur.encrypted:
            wrong.append("encryption is off, declared on")
        elif spec.encryption != "off" and cur.encrypted and not cur.is_encryption_root:
            wrong.append("it inherits encryption from %s instead of being its own encryption "
                         "root" % cur.encryptionroot)
        elif spec.keyformat and cur["keyformat"] != spec.keyformat:
            wrong.append("keyformat is %s, declared %s (change keys with zfs_key)"
                         % (cur["keyformat"], spec.keyformat))
        elif spec.pbkdf2iters and cur["pbkdf2iters"] != spec.pbkdf2iters:
            wrong.append("pbkdf2iters is %s, declared %s (change keys with zfs_key)"
                         % (cur["pbkdf2iters"], spec.pbkdf2iters))
    if wrong:
        raise Refusal("%s: these are fixed at creation and differ: %s. Nothing was changed; "
                      "recreate the dataset (and its data) to change them"
                      % (spec.name, "; ".join(wrong)))


def create_argv(spec):
    argv = ["zfs", "create"]
    if spec.type == "volume":
        argv += ["-V", spec.volsize]
    opts = dict(spec.properties)
    if spec.encryption is not None:
        opts["encryption"] = spec.encryption
    if spec.encryption not in (None, "off"):
        opts["keyformat"] = spec.keyformat
        if spec.key is not None:
            opts["keylocation"] = "prompt"  # the key arrives on stdin
        elif spec.key_file:
            opts["keylocation"] = "file://" + spec.key_file
        elif spec.keylocation:
            opts["keylocation"] = spec.keylocation
        if spec.pbkdf2iters:
            opts["pbkdf2iters"] = str(spec.pbkdf2iters)
    for p, v in opts.items():
        argv += ["-o", "%s=%s" % (p, v)]
    return argv + [spec.name]


def converge(runner, specs):
    refuse_duplicates([s.name for s in specs], "dataset")
    extra = _extra_properties(specs)
    pools = sorted({s.pool for s in specs})
    tree = read_tree(runner, pools, recursive=True, extra=extra, with_holds=False,
                     types="filesystem,volume")
    missing = [p for p in pools if p not in tree]
    if missing:
        raise Refusal("pool(s) %s not imported; create or import them with zfs_pool"
                      % ", ".join(missing))
    absent = [s.name for s in specs if s.state == "absent" and s.name in tree]
    if absent:  # snapshots and holds matter only for what is to be destroyed
        snaps = read_tree(runner, absent, recursive=True, with_holds=True,
                          types="snapshot")
        tree = type(tree)(entries=tree.entries + snaps.entries, holds=snaps.holds)
    created = set()
    # Parents before children, whatever order the list has.
    order = sorted(range(len(specs)), key=lambda i: specs[i].name.count("/"))
    plans = [None] * len(specs)
    for i in order:
        plans[i] = plan_dataset(specs[i], tree, created)
    groups = {}
    for dp in plans:
        if dp.set:
            key = tuple(sorted(dp.set.items()))
            groups.setdefault(key, []).append(dp)
    set_steps = []
    for key, members in groups.items():
        argv = ["zfs", "set"] + ["%s=%s" % kv for kv in key] + [dp.spec.name for dp in members]
        for dp in members:
            dp.plan.add("set", dp.spec.name, ", ".join("%s=%s" % kv for kv in key), argv)
        set_steps.append(argv)
    if not runner.check_mode and any(dp.plan.steps for dp in plans):
        _apply(runner, plans, order, set_steps)
        after = read_tree(runner, pools, recursive=True, extra=extra, with_holds=False,
                          types="filesystem,volume")
        for dp in plans:
            dp.after = _view(after.get(dp.spec.name), dp.spec.watched)
    return [_result(dp) for dp in plans]


def _apply(runner, plans, order, set_steps):
    # Creations parents first, then property changes, then destruction deepest first:
    # destructive steps run last.
    for i in order:
        dp = plans[i]
        for step in dp.plan.steps:
            if step.action == "create":
                runner.run(step.argv, changes=True, secret=step.secret)
                if dp.spec.key is not None and dp.spec.keylocation not in (None, "prompt"):
                    runner.run(["zfs", "set", "keylocation=" + dp.spec.keylocation,
                                dp.spec.name], changes=True)
    for argv in set_steps:
        runner.run(argv, changes=True)
    for i in reversed(order):
        for step in plans[i].plan.steps:
            if step.action in ("release", "destroy"):
                runner.run(step.argv, changes=True)


def _result(dp):
    return {
        "name": dp.spec.name,
        "state": dp.spec.state,
        "changed": dp.plan.changed,
        "created": any(s.action == "create" for s in dp.plan.steps),
        "destroyed": any(s.action == "destroy" for s in dp.plan.steps),
        "set": dp.set,
        "actions": dp.plan.as_list(),
        "encryption": dp.after.get("encryption"),
        "encryptionroot": dp.after.get("encryptionroot"),
        "diff": {"before": dp.before, "after": dp.after},
    }
