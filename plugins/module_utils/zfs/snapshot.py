# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_snapshot and zfs_bookmark backends.

Snapshots declared together are taken by one ``zfs snapshot a@s b@s ...``: ZFS makes
them in one transaction group, so they are atomic across datasets (``-r`` is atomic
across a tree). Destroying a snapshot bookmarks it first by default, so an incremental
base survives (safety rule R4), and refuses snapshots held by replication.
"""

from __future__ import annotations

from ansible_collections.blindvault.storage.plugins.module_utils.plan import (
    Plan,
    Refusal,
    refuse_duplicates,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import valid_component, valid_name
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.apply import run_commands
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import read_tree


def split_snapshot(name):
    ds, sep, snap = name.partition("@")
    if not sep or not valid_name(ds) or not valid_component(snap):
        raise Refusal("%r is not a snapshot name (pool/dataset@snapshot; letters, digits and "
                      "_.:- only)" % (name,))
    return ds, snap


def _members(tree, ds, recursive):
    return [ds] + ([c.name for c in tree.children(ds)] if recursive else [])


def converge_snapshots(runner, specs):
    """specs: dicts with name, state, recursive, holds, properties, bookmark, force."""
    for s in specs:
        split_snapshot(s["name"])
    refuse_duplicates([s["name"] for s in specs], "snapshot")
    datasets = sorted({split_snapshot(s["name"])[0] for s in specs})
    tree = read_tree(runner, datasets, recursive=any(s["recursive"] for s in specs))
    missing = [d for d in datasets if d not in tree]
    if missing:
        raise Refusal("dataset(s) %s do not exist" % ", ".join(missing))
    plan = Plan()
    results = []
    to_take = []
    to_hold = {}
    for s in specs:
        ds, snap = split_snapshot(s["name"])
        wanted = ["%s@%s" % (m, snap) for m in _members(tree, ds, s["recursive"])]
        have = [w for w in wanted if w in tree]
        res = {"name": s["name"], "state": s["state"], "snapshots": wanted, "changed": False}
        if s["state"] == "present":
            if have and len(have) < len(wanted):
                raise Refusal("%s exists on %d of %d datasets (%s missing): a recursive snapshot "
                              "must be atomic; take it under another name" % (
                                  s["name"], len(have), len(wanted),
                                  ", ".join(sorted(set(wanted) - set(have))[:5])))
            if not have:
                to_take.append(s)
                res["changed"] = True
            for tag in s["holds"]:
                lacking = [w for w in wanted if tag not in tree.holds.get(w, [])]
                if lacking:
                    to_hold.setdefault(tag, []).extend(lacking)
                    res["changed"] = True
        else:
            if have:
                held = {w: t for w, t in tree.replication_holds(ds).items() if w in have}
                if held and not s["force"]:
                    raise Refusal("%s: held by replication (%s): it is a replica's common base; "
                                  "set force: true to release and destroy it" % (
                                      s["name"], ", ".join("%s %s" % (w, ",".join(t))
                                                           for w, t in sorted(held.items()))))
                for w, tags in sorted(held.items()):
                    for tag in tags:
                        plan.add("release", w, "force", ["zfs", "release", tag, w])
                if s["bookmark"]:
                    for w in have:
                        bm = w.replace("@", "#", 1)
                        if bm not in tree:
                            plan.add("bookmark", bm, "keep an incremental base",
                                     ["zfs", "bookmark", w, bm])
                argv = ["zfs", "destroy"] + (["-r"] if s["recursive"] else []) + [s["name"]]
                plan.add("destroy", s["name"], "state absent", argv)
                res["changed"] = True
        results.append(res)
    if to_take:
        # One process, one transaction group: all declared snapshots are atomic together.
        groups = {}
        for s in to_take:
            key = (bool(s["recursive"]), tuple(sorted(s["properties"].items())))
            groups.setdefault(key, []).append(s["name"])
        for (recursive, props), snaps in groups.items():
            argv = ["zfs", "snapshot"] + (["-r"] if recursive else [])
            for k, v in props:
                argv += ["-o", "%s=%s" % (k, v)]
            plan.add("snapshot", ", ".join(snaps), "does not exist", argv + snaps)
    for tag, targets in to_hold.items():
        plan.add("hold", ", ".join(targets), "tag %s" % tag, ["zfs", "hold", tag] + targets)
    # Creation first, destruction last.
    order = {"snapshot": 0, "hold": 1, "release": 2, "bookmark": 3, "destroy": 4}
    plan.steps.sort(key=lambda st: order[st.action])
    if plan.steps and not runner.check_mode:
        run_commands(runner, [step.argv for step in plan.steps])
    return {"changed": plan.changed, "snapshots": results, "actions": plan.as_list()}


def converge_bookmark(runner, snapshot, bookmark, state):
    ds, _snap = split_snapshot(snapshot) if snapshot else (None, None)
    if bookmark and "#" not in bookmark:
        if not ds:
            raise Refusal("bookmark %r needs a dataset (pool/ds#mark) or snapshot" % bookmark)
        bookmark = "%s#%s" % (ds, bookmark)
    bds, _sep, mark = (bookmark or "").partition("#")
    if not bookmark or not valid_name(bds) or not valid_component(mark):
        raise Refusal("%r is not a bookmark name (pool/dataset#bookmark; letters, digits and "
                      "_.:- only)" % (bookmark,))
    if state == "present" and not snapshot:
        raise Refusal("state present needs snapshot (the snapshot to bookmark)")
    if ds and bds != ds:
        raise Refusal("bookmark %s must be on the snapshot's dataset %s" % (bookmark, ds))
    tree = read_tree(runner, [bds], recursive=False, with_holds=False)
    if bds not in tree:
        raise Refusal("dataset %s does not exist" % bds)
    plan = Plan()
    cur = tree.get(bookmark)
    if state == "present":
        snap = tree.get(snapshot)
        if cur is not None:
            if snap is not None and cur["guid"] != snap["guid"]:
                raise Refusal("%s exists but marks another snapshot (guid %s, %s has %s)"
                              % (bookmark, cur["guid"], snapshot, snap["guid"]))
        else:
            if snap is None:
                raise Refusal("snapshot %s does not exist" % snapshot)
            plan.add("bookmark", bookmark, "does not exist", ["zfs", "bookmark", snapshot, bookmark])
    elif cur is not None:
        plan.add("destroy", bookmark, "state absent", ["zfs", "destroy", bookmark])
    if plan.steps and not runner.check_mode:
        for step in plan.steps:
            runner.run(step.argv, changes=True)
    guid = cur["guid"] if cur is not None else (tree.get(snapshot)["guid"]
                                                if snapshot and tree.get(snapshot) else None)
    return {"changed": plan.changed, "bookmark": bookmark, "guid": guid,
            "actions": plan.as_list(),
            "diff": {"before": {"exists": cur is not None},
                     "after": {"exists": state == "present"}}}
