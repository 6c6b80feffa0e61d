# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_migrate: unencrypted datasets moved under an encryption root, proven, then switched.

The post-mortem's sequence, made safe. Per dataset ``D`` (with its descendants), its new home is
``ROOT/<last part of D>``:

1. **copy** - :func:`..replication.replicate` sends ``D`` non-raw into ``ROOT`` at one atomic
   snapshot; it is encrypted on receive under ``ROOT`` (R9; the key is loaded for the receive).
   A rerun reuses the snapshot, so it changes nothing; an interrupted receive resumes.
2. **verify** - every dataset of the copy is read with ``ROOT``'s key and its files compared
   with the original's at the same snapshot (:func:`..verify.verify`). Nothing further happens
   unless every file is equal.
3. **finalize** (only when asked, and only after 2 passed in the same run) - a final snapshot
   brings the copy up to date (incremental), it is verified again, then the switch: the copy
   records ``blindvault:migrated-from``, stops being a replica (read-only and the replica mark
   go), takes the original's mountpoint once the original gave it up, and is mounted; only then
   is the original destroyed, with its snapshots and bookmarks. The key stays loaded (the
   datasets are in use); ``ROOT``'s ``keylocation`` loads it at boot.

State is read each run, so a run interrupted anywhere continues: a copy marked
``migrated-from`` whose original still exists goes straight to the destroy (it was verified
before the mark was written).

Traps designed around (documented in the role): destroying the originals destroys their
bookmarks, so replicas of the *unencrypted* originals elsewhere (a carrier) share nothing with
the new encrypted datasets - their next trip is a full send of the new group, root first, and
the old carrier copy should be kept until it has arrived. A local non-raw copy gets new master
keys: raw incrementals to an existing carrier copy of *encrypted* data would fail, which is why
this module only takes unencrypted datasets.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import List

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import replication, verify as zverify
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import valid_name
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import REPLICA_OF, read_tree

MIGRATED_FROM = "blindvault:migrated-from"
MOUNTPOINT_WAS = "blindvault:migrate-mountpoint"  # the original's, kept on the copy during the switch
EXTRA = ("canmount", MIGRATED_FROM, MOUNTPOINT_WAS)  # besides mountpoint, mounted, readonly (always read)


@dataclass
class MigrateOptions:
    datasets: List[str]
    root: str
    key_file: str
    snapshot: str = "blindvault-migrate"
    final_snapshot: str = "blindvault-migrate-final-%Y%m%d%H%M%S"
    finalize: bool = False
    properties: dict = field(default_factory=dict)


def target_of(opts, ds):
    return "%s/%s" % (opts.root, ds.rsplit("/", 1)[-1])


def validate(opts):
    if not opts.datasets:
        raise Refusal("datasets: name at least one unencrypted dataset to migrate")
    for n in list(opts.datasets) + [opts.root]:
        if not isinstance(n, str) or not valid_name(n) or "/" not in n:
            raise Refusal("%r is not a dataset name below a pool (pool/dataset)" % (n,))
    for what in ("snapshot", "final_snapshot"):
        v = getattr(opts, what)
        if not isinstance(v, str) or not v or not replication.SNAPSHOT_NAME.match(time.strftime(v, time.gmtime(0))):
            raise Refusal("%s %r is not a snapshot's short name (strftime fields allowed)" % (what, v))
    if "%" in opts.snapshot:
        raise Refusal("snapshot %r: a fixed name (reruns reuse it); final_snapshot takes strftime fields"
                      % opts.snapshot)
    if time.strftime(opts.final_snapshot, time.gmtime(0)) == opts.snapshot:
        raise Refusal("snapshot and final_snapshot must differ")
    if len(set(opts.datasets)) != len(opts.datasets):
        raise Refusal("datasets: a dataset is named twice")
    for a in opts.datasets:
        if a == opts.root or opts.root.startswith(a + "/") or a.startswith(opts.root + "/"):
            raise Refusal("%s and the encryption root %s overlap: the root must be a new dataset "
                          "beside the ones migrated" % (a, opts.root))
        for b in opts.datasets:
            if a != b and b.startswith(a + "/"):
                raise Refusal("%s is inside %s, which is migrated with its descendants: name %s only"
                              % (b, a, a))
    targets = [target_of(opts, d) for d in opts.datasets]
    if len(set(targets)) != len(targets):
        raise Refusal("datasets: two datasets have the same last name, so the same new home under %s"
                      % opts.root)
    if not opts.key_file or not os.path.isabs(opts.key_file) or not os.path.isfile(opts.key_file):
        raise Refusal("key_file %r: an absolute path to the key file of %s is needed"
                      % (opts.key_file, opts.root))


def plan(src, dst, opts):
    """Per dataset, what this run does: ``copy`` (no copy yet), ``update`` (a copy exists),
    ``destroy`` (switched, the original remains: an interrupted finalize), ``done``.
    Refusals (name clashes, encrypted or replica originals) come before anything runs."""
    root = dst.get(opts.root)
    if root is None:
        raise Refusal("the encryption root %s does not exist (create it first: "
                      "blindvault.storage.zfs_dataset with encryption and key_file)" % opts.root)
    if not root.is_encryption_root:
        raise Refusal("%s is not an encryption root (encryption=%s)" % (opts.root, root["encryption"]))
    items = []
    for ds in opts.datasets:
        t_name = target_of(opts, ds)
        d, t = src.get(ds), dst.get(t_name)
        item = {"source": ds, "target": t_name, "action": None, "reason": None}
        if t is not None and t[MIGRATED_FROM] == ds:
            item["action"] = "destroy" if d is not None else "done"
            item["reason"] = ("switched over; the original is still there" if d is not None
                              else "migrated")
        elif d is None:
            raise Refusal("%s does not exist (and %s is not its migrated copy)" % (ds, t_name))
        elif d.type != "filesystem":
            raise Refusal("%s is a %s: only filesystems are migrated" % (ds, d.type))
        elif d.encrypted:
            raise Refusal("%s is encrypted already (encryption root %s): a local non-raw copy would "
                          "get new master keys, and raw incrementals to its existing replicas would "
                          "fail; only unencrypted datasets are migrated" % (ds, d.encryptionroot))
        elif d[REPLICA_OF]:
            raise Refusal("%s is a replica of %s: migrate the original at its site" % (ds, d[REPLICA_OF]))
        elif _odd_descendant(src, ds):
            raise Refusal(_odd_descendant(src, ds))
        elif t is None:
            item["action"], item["reason"] = "copy", "no copy under %s yet" % opts.root
        elif t[REPLICA_OF] != ds:
            raise Refusal("%s exists and is not a copy of %s (blindvault:replica-of is %s): "
                          "rename one of them" % (t_name, ds, t[REPLICA_OF]))
        else:
            item["action"], item["reason"] = "update", "copied earlier"
        if d is not None:  # an interrupted switch left the original's mountpoint on the copy
            item["mountpoint"] = (t[MOUNTPOINT_WAS] if t is not None and t[MOUNTPOINT_WAS]
                                  else d["mountpoint"])
        items.append(item)
    return items


def _odd_descendant(src, ds):
    """Why a descendant of ``ds`` cannot be migrated with it (files are compared, so no
    volumes; only unencrypted data), or None."""
    for d in src.datasets:
        if d.name.startswith(ds + "/"):
            if d.type != "filesystem":
                return "%s (inside %s) is a %s: its contents cannot be compared as files, so it is not migrated" \
                    % (d.name, ds, d.type)
            if d.encrypted:
                return "%s (inside %s) is encrypted already: only unencrypted datasets are migrated" % (d.name, ds)
    return None


def _replicate(runner, opts, item, snapshot):
    ro = replication.Options(source=item["source"], target=item["target"], snapshot=snapshot,
                             hold=False, bookmark=False, target_key_file=opts.key_file,
                             properties=dict(opts.properties))
    res = replication.replicate(runner, ro)
    if res["refused"] or res["failed"]:
        why = "; ".join("%s: %s" % kv for kv in list(res["refused"].items()) + list(res["failed"].items()))
        raise Refusal("copying %s to %s: %s; nothing was switched or destroyed" % (item["source"], item["target"], why))
    return res


def _verify(runner, opts, item, snapshot):
    res = zverify.verify(runner, {"name": item["target"], "key_file": opts.key_file, "mode": "files",
                                  "snapshot": snapshot, "compare_files_with": item["source"]})
    if not res["ok"]:
        bad = [r for r in res["datasets"] if r["status"] == "failed"]
        raise Refusal("verifying %s against %s at @%s failed: %s; nothing was switched or destroyed"
                      % (item["target"], item["source"], snapshot,
                         "; ".join("%s: %s" % (r["name"], r["error"]) for r in bad[:5]) or res["restore_errors"]))
    return {"datasets": len(res["datasets"]), "files": sum(r["files"] or 0 for r in res["datasets"]),
            "bytes": sum(r["bytes"] or 0 for r in res["datasets"]), "snapshot": snapshot}


def _strip_altroot(mp, altroot):
    if altroot and mp.startswith(altroot.rstrip("/") + "/"):
        return mp[len(altroot.rstrip("/")):]  # zfs shows mountpoints under the pool's altroot
    return mp


def unmount_commands(item, altroot=None):
    """The switch's first half, safe to repeat: the copy keeps the original's mountpoints (the
    top's and every local one below it), then the original gives them up (fails while busy,
    before anything else changed)."""
    t = item["target"]
    mp = _strip_altroot(item.get("mountpoint") or "none", altroot)
    kids = {c: (src, _strip_altroot(v, altroot)) for c, (src, v) in (item.get("child_mountpoints") or {}).items()}
    cmds = [["zfs", "set", "%s=%s" % (MOUNTPOINT_WAS, mp), t]]
    cmds += [["zfs", "set", "%s=%s" % (MOUNTPOINT_WAS, kids[c][1]), c] for c in sorted(kids)]
    cmds += [["zfs", "set", "mountpoint=none", kids[c][0]]
             for c in sorted(kids, key=lambda n: n.split("/"), reverse=True)]
    return cmds + [["zfs", "set", "mountpoint=none", item["source"]]]


def takeover_commands(item, tree, altroot=None):
    """The switch's second half (after the original proved unchanged): the copy stops being
    read-only, takes the mountpoints and is mounted; the ``migrated-from`` mark comes last (then
    the replica mark goes), so a run interrupted before it repeats the switch, and one after it
    only destroys."""
    t = item["target"]
    mp = _strip_altroot(item.get("mountpoint") or "none", altroot)
    kids = {c: _strip_altroot(v, altroot) for c, (_src, v) in (item.get("child_mountpoints") or {}).items()}
    cmds = [["zfs", "inherit", "-r", "readonly", t], ["zfs", "set", "mountpoint=%s" % mp, t]]
    cmds += [["zfs", "set", "mountpoint=%s" % kids[c], c] for c in sorted(kids)]

    def mountable(name):  # the nearest local mountpoint decides (the top's, or a child's)
        while name != t and name not in kids:
            name = name.rsplit("/", 1)[0]
        return (kids[name] if name in kids else mp) not in ("none", "legacy")

    members = [d.name for d in tree.datasets if d.type == "filesystem" and d["canmount"] != "off"
               and d["mounted"] != "yes" and (d.name == t or d.name.startswith(t + "/"))] \
        if t in tree else [t]  # check mode: the copy is not there yet
    cmds += [["zfs", "mount", n] for n in sorted(members, key=lambda n: n.split("/")) if mountable(n)]
    return cmds + [["zfs", "set", "%s=%s" % (MIGRATED_FROM, item["source"]), t]] + release_commands(item)


def switch_commands(item, tree, altroot=None):
    """The whole switch, as :func:`migrate` runs it around the unchanged-original check."""
    return unmount_commands(item, altroot) + takeover_commands(item, tree, altroot)


def child_mountpoints(items, local, kept):
    """Per pending item, {copy's descendant: (original's descendant, mountpoint)} for every
    local mountpoint below the original (``local``: ``zfs get -s local mountpoint``), where one
    the copy kept in an interrupted switch wins (``kept``: ``zfs get -s local`` of
    blindvault:migrate-mountpoint; a user property inherits, so only local values count)."""
    for item in items:
        s, t = item["source"], item["target"]
        kids = {t + n[len(s):]: (n, v) for n, v in local.items() if n.startswith(s + "/")}
        for n, v in kept.items():
            if n.startswith(t + "/"):
                kids[n] = (s + n[len(t):], v)
        item["child_mountpoints"] = kids


def release_commands(item):
    """The copy is no replica any more (repeated before the destroy: an interrupted run may
    have marked it without this)."""
    return [["zfs", "inherit", "-r", REPLICA_OF, item["target"]]]


def migrate(runner, opts, now=None):
    validate(opts)
    names = list(opts.datasets)
    src = read_tree(runner, names, recursive=True, with_holds=False, extra=EXTRA, types="filesystem,volume")
    dst = read_tree(runner, [opts.root], recursive=True, with_holds=False, extra=EXTRA, types="filesystem,volume")
    items = plan(src, dst, opts)
    root = dst.get(opts.root)
    proof = runner.run(["zfs", "load-key", "-n", "-L", "file://" + opts.key_file, opts.root], check=False) \
        if root["keystatus"] != "available" else None
    if proof is not None and proof.rc != 0:
        raise Refusal("key_file %s does not open %s: %s" % (opts.key_file, opts.root,
                                                            (proof.stderr or proof.stdout).strip()))
    # A finalize takes a new final snapshot each run: whatever was written before it (a rerun
    # after a refused switch included) travels; nothing written after it is ever destroyed.
    snapshot = time.strftime(opts.final_snapshot, time.gmtime(now)) if opts.finalize else opts.snapshot
    result = {"changed": False, "root": opts.root, "snapshot": snapshot, "finalize": opts.finalize,
              "datasets": items, "warnings": []}
    pending = [i for i in items if i["action"] in ("copy", "update")]
    for item in pending:
        rep = _replicate(runner, opts, item, snapshot)
        item["copy"] = {"changed": rep["changed"], "snapshot_taken": rep.get("snapshot_taken"),
                        "streams": [s.get("command") for s in rep["streams"]]}
        result["changed"] = result["changed"] or rep["changed"]
    for item in pending:
        if runner.check_mode and (item["action"] == "copy" or item["copy"]["changed"]):
            item["verified"] = None  # nothing to read yet: it is verified when the run is real
            continue
        item["verified"] = _verify(runner, opts, item, snapshot)
    if not opts.finalize:
        if any(i["action"] in ("copy", "update") for i in items):
            result["warnings"].append("copies verified; the originals stay until a run with finalize")
        return result

    after = read_tree(runner, [opts.root], recursive=True, with_holds=False, extra=EXTRA,
                      types="filesystem,volume")
    altroot = runner.run(["zpool", "list", "-H", "-o", "altroot", opts.root.split("/", 1)[0]]).stdout.strip()
    altroot = None if altroot in ("", "-") else altroot
    originals = [i["source"] for i in pending if i["source"] in src]
    local = _local(runner, "mountpoint", originals)
    kept = _local(runner, MOUNTPOINT_WAS, [i["target"] for i in pending if i["target"] in after])
    child_mountpoints(pending, local, kept)
    if pending and runner.run(["zfs", "get", "-H", "-o", "value", "keystatus", opts.root]).stdout.strip() \
            != "available":
        runner.run(["zfs", "load-key", "-L", "file://" + opts.key_file, opts.root], changes=True)
        result["key_loaded"] = True
    for item in items:
        if item["action"] not in ("copy", "update", "destroy"):
            continue
        steps = unmount_commands(item, altroot) if item["action"] != "destroy" else []
        item["finalize"] = [" ".join(c) for c in steps]
        for c in steps:
            runner.run(c, changes=True)
        if not runner.check_mode:
            _unchanged_since_copy(runner, item)  # nothing is taken over or destroyed otherwise
        last = takeover_commands(item, after, altroot) if item["action"] != "destroy" else release_commands(item)
        last.append(["zfs", "destroy", "-r", item["source"]])
        item["finalize"] += [" ".join(c) for c in last]
        for c in last:
            runner.run(c, changes=True)
        result["changed"] = True
        if not runner.check_mode:
            item["action"] = "migrated"
    return result


def _local(runner, prop, names):
    """{dataset: value} of ``prop`` where it is set locally on ``names`` or below (one process)."""
    if not names:
        return {}
    got = runner.run(["zfs", "get", "-H", "-r", "-s", "local", "-o", "name,value", prop] + names)
    return dict(line.split("\t", 1) for line in got.stdout.splitlines() if "\t" in line)


def _unchanged_since_copy(runner, item):
    """Refuse (before anything is taken over or destroyed) unless every dataset of the original
    has had nothing written since its newest snapshot and the copy holds that very snapshot (by
    guid): a write after the final snapshot, a dataset recreated under the old name, or one
    created after the copy would otherwise be destroyed without a copy."""
    s, t = item["source"], item["target"]
    runner.run(["zpool", "sync", s.split("/", 1)[0]])  # written counts synced txgs only
    src = read_tree(runner, [s], recursive=True, with_holds=False, extra=("written",))
    dst = read_tree(runner, [t], recursive=True, with_holds=False)
    for d in src.datasets:
        snaps = src.snapshots_of(d.name)
        copy = t + d.name[len(s):]
        have = {str(x["guid"]) for x in dst.snapshots_of(copy)}
        why = None
        if not snaps:
            why = "%s has no snapshot: it was created after the copy" % d.name
        elif str(snaps[-1]["guid"]) not in have:
            why = "%s's newest snapshot %s is not on the copy %s" % (d.name, snaps[-1].name, copy)
        elif d["written"]:
            why = "%s was written after %s (%d bytes)" % (d.name, snaps[-1].name, d["written"])
        if why:
            raise Refusal("%s: nothing was destroyed. Stop what writes to it and run finalize again "
                          "(a new final snapshot carries the rest)" % why)
