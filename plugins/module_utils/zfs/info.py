# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_info's backend: one tree read, hazards computed without any key."""

from __future__ import annotations

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import hazards as hz
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import KEY_ID, read_tree


def _entry(d, holds=None):
    out = d.as_dict()
    if d.type in ("snapshot", "bookmark"):
        out["dataset"] = d.dataset
    if d.type == "snapshot":
        out["holds"] = holds.get(d.name, [])
    return out


def report(tree, top):
    """The zfs_info result for ``top`` (a pool or dataset) from a Tree."""
    roots = tree.encryption_roots()
    encryption_roots = []
    for name, members in sorted(roots.items()):
        root = tree.get(name)
        encryption_roots.append({
            "name": name,
            "keyformat": root["keyformat"] if root else None,
            "keystatus": root["keystatus"] if root else None,
            "key_id": root[KEY_ID] if root else None,
            "members": members,
        })
    return {
        "exists": top in tree,
        "datasets": [_entry(d) for d in tree.datasets],
        "snapshots": [_entry(d, tree.holds) for d in tree.snapshots],
        "bookmarks": [_entry(d) for d in tree.bookmarks],
        "holds": tree.holds,
        "encryption_roots": encryption_roots,
        "hazards": hz.tree_hazards(tree),
    }


def info(runner, name, recursive=True, properties=(), compare_with=None):
    tree = read_tree(runner, [name], recursive=recursive, extra=properties)
    result = report(tree, name)
    if compare_with:
        source = read_tree(runner, [compare_with], recursive=True, with_holds=False)
        if compare_with not in source:
            raise Refusal("compare_with: source %s does not exist" % compare_with)
        result["hazards"] += hz.compare_hazards(source, compare_with, tree, name)
    return result
