# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A ZFS tree's state from one ``zfs list -Hp -t all -o <props> -r NAME``.

Hidden properties (``pbkdf2salt``, ``pbkdf2iters``) and user properties
(``blindvault:key-id``) come back when named in ``-o``, keys loaded or not, so the whole
encryption layout of a tree costs one process however many datasets it has. Holds cost one
more process, only for snapshots whose ``userrefs`` say they have any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError

KEY_ID = "blindvault:key-id"
# Set by zfs_replicate on every receive (zfs recv -o): this dataset is a replica of that
# source. Snapshots are never taken on a replica (safety rule R2).
REPLICA_OF = "blindvault:replica-of"
# Hold tags placed by replication: ``blindvault:<target dataset>``. They mark the newest
# common base of a replica; nothing here destroys such a snapshot unless forced.
HOLD_PREFIX = "blindvault:"

# What every tree read asks for; callers may add properties (returned in .props).
BASE_PROPERTIES = (
    "name", "type", "guid", "createtxg", "encryption", "encryptionroot", "keyformat",
    "keylocation", "keystatus", "pbkdf2iters", "pbkdf2salt", KEY_ID, REPLICA_OF, "userrefs",
    "receive_resume_token", "origin", "used", "mounted", "mountpoint", "readonly",
)
NUMERIC = {"guid", "createtxg", "creation", "pbkdf2iters", "pbkdf2salt", "userrefs", "used", "written",
           "referenced"}


@dataclass(frozen=True)
class Dataset:
    """One filesystem, volume, snapshot or bookmark, as ``zfs list -Hp`` printed it.

    Values ZFS prints as ``-`` (not applicable / unset) are None.
    """

    name: str
    type: str
    props: Dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def __getitem__(self, prop):
        return self.props.get(prop)

    @property
    def dataset(self):
        """The filesystem/volume a snapshot or bookmark belongs to (itself otherwise)."""
        return self.name.split("@", 1)[0].split("#", 1)[0]

    @property
    def encrypted(self):
        return self["encryption"] not in (None, "off")

    @property
    def encryptionroot(self):
        return self["encryptionroot"]

    @property
    def is_encryption_root(self):
        return self.encrypted and self.encryptionroot == self.name

    def as_dict(self):
        return dict(self.props, name=self.name, type=self.type)


@dataclass(frozen=True)
class Tree:
    """An immutable view of one or more ZFS trees (keyed by full name)."""

    entries: Tuple[Dataset, ...]
    holds: Dict[str, List[str]] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {d.name: d for d in self.entries})

    def get(self, name) -> Optional[Dataset]:
        return self._by_name.get(name)

    def __contains__(self, name):
        return name in self._by_name

    @property
    def datasets(self):
        return [d for d in self.entries if d.type in ("filesystem", "volume")]

    @property
    def snapshots(self):
        return [d for d in self.entries if d.type == "snapshot"]

    @property
    def bookmarks(self):
        return [d for d in self.entries if d.type == "bookmark"]

    def snapshots_of(self, name):
        """Snapshots of one dataset, oldest first (by createtxg)."""
        snaps = [d for d in self.snapshots if d.dataset == name]
        return sorted(snaps, key=lambda d: d["createtxg"] or 0)

    def bookmarks_of(self, name):
        return sorted([d for d in self.bookmarks if d.dataset == name],
                      key=lambda d: d["createtxg"] or 0)

    def replication_holds(self, under):
        """{snapshot: [blindvault:* tags]} for held snapshots of ``under`` and its descendants."""
        found = {}
        for snap, tags in self.holds.items():
            ds = snap.split("@", 1)[0]
            mine = [t for t in tags if t.startswith(HOLD_PREFIX)]
            if mine and (ds == under or ds.startswith(under + "/")):
                found[snap] = mine
        return found

    def children(self, name):
        prefix = name + "/"
        return [d for d in self.datasets if d.name.startswith(prefix)]

    def encryption_roots(self):
        """{root name: [member names, root first]} for every encryption root in the tree."""
        roots = {}
        for d in self.datasets:
            if d.encrypted and d.encryptionroot:
                roots.setdefault(d.encryptionroot, []).append(d.name)
        for members in roots.values():
            members.sort(key=lambda n: (n.count("/"), n))
        return roots


def _value(prop, text):
    if text == "-" or text == "":
        return None
    if prop in NUMERIC:
        try:
            return int(text)
        except ValueError:
            return text
    return text


def parse_list(text, columns):
    """Parse ``zfs list -Hp -o <columns>`` output into Dataset records."""
    entries = []
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise ValueError("zfs list printed %d fields where %d were asked for: %r"
                             % (len(fields), len(columns), line))
        props = {c: _value(c, v) for c, v in zip(columns, fields)}
        name = props.pop("name")
        kind = props.pop("type")
        entries.append(Dataset(name=name, type=kind, props=props))
    return entries


def parse_holds(text):
    """``zfs holds -H snap...`` -> {snapshot: [tags]}."""
    holds = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        snap, tag = line.split("\t")[:2]
        holds.setdefault(snap, []).append(tag)
    return holds


def columns_for(extra=()):
    cols = list(BASE_PROPERTIES)
    cols += [p for p in extra if p not in cols]
    return cols


def read_tree(runner, names, recursive=True, extra=(), with_holds=True, missing_ok=True,
              types="all"):
    """Read one or more trees with one ``zfs list`` (plus one ``zfs holds`` if any exist).

    Names that do not exist are simply absent from the Tree when ``missing_ok``.
    ``types`` is zfs list's ``-t`` (``filesystem,volume`` skips snapshots and bookmarks).
    """
    names = list(names)
    cols = columns_for(extra)
    argv = ["zfs", "list", "-Hp", "-t", types, "-o", ",".join(cols)]
    if recursive:
        argv.append("-r")
    else:
        argv += ["-d", "0"]  # the dataset itself; -d 0 still skips its snapshots, see below
    # zfs list exits 1 if any named dataset is missing, but still lists the others.
    res = runner.run(argv + names, check=False)
    if res.rc != 0:
        problems = [line for line in res.stderr.splitlines()
                    if line.strip() and not (missing_ok and line.endswith("dataset does not exist"))]
        if problems:
            raise CommandError(res.argv, res.rc, res.stdout, res.stderr)
    entries = parse_list(res.stdout, cols)
    found = [e.name for e in entries if e.type in ("filesystem", "volume")]
    if not recursive and types == "all" and found:
        # With -d 0 zfs lists no snapshots; those of the named datasets are wanted too.
        snaps = runner.run(["zfs", "list", "-Hp", "-t", "snapshot,bookmark", "-o", ",".join(cols),
                            "-d", "1"] + found)
        entries += parse_list(snaps.stdout, cols)
    holds = {}
    if with_holds:
        held = [e.name for e in entries if e.type == "snapshot" and (e["userrefs"] or 0) > 0]
        if held:
            holds = parse_holds(runner.run(["zfs", "holds", "-H"] + held).stdout)
    return Tree(entries=tuple(entries), holds=holds)
