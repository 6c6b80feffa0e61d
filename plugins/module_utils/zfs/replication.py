# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_replicate's backend: blind (raw) replication that keeps encryption groups whole.

Read both trees once, plan as data (``plan_replication``, pure), then apply the plan
(``replicate``): one ``zfs send | zfs recv`` pipe per stream, root first, group by group.

The rules (docs/safety.md, R1-R11) in the planner's words:

* the unit is an encryption **group** (a root and every dataset whose ``encryptionroot``
  it is); a source inside a group is widened to the whole group, every run, from one
  atomic snapshot of its root (R1, R2);
* on an original source that snapshot is taken (``snapshot`` format); on a replica
  (``blindvault:replica-of`` set) none is, the newest snapshot all members share is sent;
* seeds and new members go as ``-R`` streams from their root, so the target keeps the
  hierarchy; a group with a new member (or a member that lost it) goes as one
  ``-R -I`` stream; otherwise each member goes on its own, base found by guid (R3, R4);
* the base must be the target's newest snapshot: anything newer is destroyed only with
  ``force_rollback`` (``-F``), and the plan names each snapshot it would destroy (R4);
* a failure stops its group; other groups go on; the run fails at the end (R5);
* replicas of source datasets that no longer exist (orphans) block their group (R6);
* filters select whole groups; a ``-R`` stream that would carry an excluded group is
  refused (R7);
* every receive records the key generation (``-o blindvault:key-id``) or carries it in
  the ``-R`` stream's properties (R8).
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import valid_name
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.hazards import (
    compare_hazards,
    hazard,
    tree_hazards,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.apply import run_commands
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import (
    HOLD_PREFIX,
    KEY_ID,
    REPLICA_OF,
    read_tree,
)

DEFAULT_SNAPSHOT = "blindvault-%Y%m%d-%H%M%S"
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
SOURCE_EXTRA = ("written", "referenced")
TARGET_EXTRA = ("written",)


@dataclass
class Options:
    source: str
    target: str
    recursive: bool = True
    include: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=list)
    snapshot: Optional[str] = None
    raw: object = "auto"
    decrypt: bool = False
    hold: bool = True
    bookmark: bool = True
    resume: bool = True
    force_rollback: bool = False
    allow_orphans: bool = False
    replica_readonly: bool = True
    properties: Dict[str, str] = field(default_factory=dict)
    progress_file: Optional[str] = None
    target_key_file: Optional[str] = None


@dataclass
class Member:
    """The decision for one source dataset."""

    source: str
    target: str
    group: str
    action: str = "up to date"  # full | incremental | up to date | refused | skipped
    base: Optional[str] = None  # full name of the base snapshot/bookmark on the source
    snapshot: Optional[str] = None
    reason: str = ""
    destroys: List[str] = field(default_factory=list)  # target snapshots -F would destroy
    stream: Optional[int] = None  # index of the stream that carries it

    def as_dict(self):
        d = {"source": self.source, "target": self.target, "group": self.group,
             "action": self.action, "base": self.base, "snapshot": self.snapshot,
             "reason": self.reason}
        if self.destroys:
            d["destroys"] = self.destroys
        return d


@dataclass
class Stream:
    """One ``zfs send | zfs recv`` pipe."""

    group: str
    kind: str  # full | incremental | group | resume | abort
    send: Optional[List[str]]
    recv: List[str]
    datasets: List[str]
    target: str
    bytes_estimated: Optional[int] = None
    estimate_from: str = ""
    status: str = "planned"  # planned | done | failed | skipped
    error: str = ""
    seconds: float = 0.0

    @property
    def command(self):
        if self.send is None:
            return " ".join(self.recv)
        return "%s | %s" % (" ".join(self.send), " ".join(self.recv))

    def as_dict(self):
        return {"group": self.group, "kind": self.kind, "command": self.command,
                "datasets": self.datasets, "target": self.target,
                "bytes_estimated": self.bytes_estimated, "estimate_from": self.estimate_from,
                "status": self.status, "error": self.error, "seconds": self.seconds}


@dataclass
class ReplicationPlan:
    source_top: str
    target_top: str
    snapshot: Optional[str]
    take_snapshot: Optional[List[str]]  # argv, on an original source
    source_is_replica: bool
    members: List[Member]
    streams: List[Stream]
    refused: Dict[str, str]
    hazards: List[dict]
    warnings: List[str]
    # groups whose root is at the snapshot already while members still lack it (an interrupted
    # -R seed, resumed for the root alone): only a newer snapshot can carry them, root first
    need_newer: List[str] = field(default_factory=list)


def raw_setting(value):
    """``raw``: 'auto' or a boolean in any of Ansible's spellings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise Refusal("raw must be auto, true or false, not %r" % (value,))


def validate(opts):
    for what in ("source", "target"):
        name = getattr(opts, what)
        if not name or not valid_name(name):
            raise Refusal("%s %r is not a dataset name (pool/dataset)" % (what, name))
    s, t = opts.source, opts.target
    if s == t or t.startswith(s + "/") or s.startswith(t + "/"):
        raise Refusal("source %s and target %s overlap; replicate into another tree" % (s, t))
    if "/" not in t:
        raise Refusal("target %s is a pool's root dataset; replicate into a dataset below it "
                      "(e.g. %s/%s)" % (t, t, s.rsplit("/", 1)[-1]))
    opts.raw = raw_setting(opts.raw)
    if opts.snapshot is not None:
        rendered = time.strftime(opts.snapshot, time.gmtime(0))
        if not SNAPSHOT_NAME.match(rendered):
            raise Refusal("snapshot %r does not make a valid snapshot name" % opts.snapshot)
    for k in opts.properties:
        if k in ("encryption", "keyformat", "keylocation", "pbkdf2iters", "pbkdf2salt", KEY_ID,
                 REPLICA_OF):
            raise Refusal("properties: %s is managed by replication, it cannot be overridden" % k)


def group_of(d):
    """An encrypted dataset's group is named by its encryption root; others stand alone."""
    return d.encryptionroot if d.encrypted and d.encryptionroot else d.name


def _selected(name, top, opts):
    rel = name[len(top) + 1:] if name != top else ""
    cands = [name] + ([rel] if rel else [])

    def hit(pats):
        return any(fnmatch.fnmatchcase(c, p) for c in cands for p in pats)

    return (not opts.include or hit(opts.include)) and not hit(opts.exclude)


def _newest_shared(src, names):
    """The newest snapshot name every dataset in ``names`` has (by the first one's createtxg)."""
    sets = [{s.name.split("@", 1)[1] for s in src.snapshots_of(n)} for n in names]
    shared = set.intersection(*sets) if sets else set()
    for snap in reversed(src.snapshots_of(names[0])):
        short = snap.name.split("@", 1)[1]
        if short in shared:
            return short
    return None


def _common_base(src, dst, s_name, t_name):
    """(base dataset record on the source or None, [target snapshots newer than it])."""
    t_snaps = dst.snapshots_of(t_name)
    by_guid = {}
    for d in src.snapshots_of(s_name):
        by_guid[d["guid"]] = d
    for d in src.bookmarks_of(s_name):
        by_guid.setdefault(d["guid"], d)
    for i in range(len(t_snaps) - 1, -1, -1):
        base = by_guid.get(t_snaps[i]["guid"])
        if base is not None:
            return base, [t.name for t in t_snaps[i + 1:]]
    return None, [t.name for t in t_snaps]


def _estimate(src, s_name, base, full):
    """Bytes a send would carry, from properties (for a snapshot not taken yet)."""
    d = src.get(s_name)
    if full or base is None:
        return d["referenced"] if d is not None else None
    total = d["written"] or 0
    for snap in src.snapshots_of(s_name):
        if (snap["createtxg"] or 0) > (base["createtxg"] or 0):
            total += snap["written"] or 0
    return total


def plan_replication(src, dst, opts, source_top, target_top, snapshot, new_snapshot,
                     target_parent=None, resumed=()):
    """The whole plan, as data. Pure: trees in, plan out.

    ``src``: the tree of ``source_top`` (recursive); ``dst``: the tree of ``target_top``;
    ``snapshot``: the short name sent up to; ``new_snapshot``: it is still to be taken;
    ``target_parent``: the target top's parent dataset record (None if it does not exist);
    ``resumed``: targets whose interrupted receive this run finished (a member resumed alone
    is its own encryption root until its group's ``-R -I`` stream puts it back, R5).
    """
    warnings = []
    top = src.get(source_top)
    members = []
    for d in src.datasets:
        if d.name != source_top and not d.name.startswith(source_top + "/"):
            continue
        if d.name != source_top and not opts.recursive:
            continue
        members.append(d)
    members.sort(key=lambda d: d.name.split("/"))  # pre-order: parents before children

    def target_of(name):
        return target_top + name[len(source_top):]

    groups = {}
    for d in members:
        groups.setdefault(group_of(d), []).append(d)
    included = {g for g in groups if _selected(g, source_top, opts)}
    excluded = set(groups) - included
    chosen = [d for d in members if group_of(d) in included]
    if not chosen:
        raise Refusal("include/exclude select nothing under %s (groups: %s)"
                      % (source_top, ", ".join(sorted(groups)) or "none"))
    src_names = {d.name for d in members}

    refused = {}
    decided = {}
    streams = []
    hazards = []

    need_newer = []

    def refuse(group, why):
        refused.setdefault(group, why)

    def raw_for(names):
        encrypted = [n for n in names if src.get(n).encrypted]
        if opts.raw == "auto":
            return bool(encrypted)
        if opts.raw is False and encrypted and not opts.decrypt:
            refuse(group_of(src.get(encrypted[0])),
                   "raw: false would send %s decrypted; set decrypt: true for the recovery path "
                   "(re-sending decrypted under the target's encryption root)" % encrypted[0])
        return bool(opts.raw)

    def subtree(name):
        return [d.name for d in chosen if d.name == name or d.name.startswith(name + "/")]

    def excluded_under(name):
        return sorted(g for g in excluded if g == name or g.startswith(name + "/"))

    # -- orphans (R6): replicas under the target whose source is gone or excluded
    for t in dst.datasets:
        if t.name == target_top or not t.name.startswith(target_top + "/"):
            continue
        s_name = source_top + t.name[len(target_top):]
        if s_name in src_names and group_of(src.get(s_name)) in included:
            continue
        if not opts.recursive:
            continue
        parent_rel = t.name.rsplit("/", 1)[0]
        if parent_rel != target_top and source_top + parent_rel[len(target_top):] not in src_names:
            continue  # only the topmost orphan of a subtree is named
        why = "excluded by include/exclude" if s_name in src_names else "no longer exists"
        hazards.append(hazard(t.name, t.encryptionroot, "orphan",
                              "its source %s %s: a re-keyed %s arriving over it leaves it "
                              "undecryptable; destroy or move it, or set allow_orphans" % (
                                  s_name, why, t.encryptionroot or "parent")))
        if t.encrypted and not t.is_encryption_root and t.encryptionroot and not opts.allow_orphans:
            g = source_top + t.encryptionroot[len(target_top):]
            if t.encryptionroot.startswith(target_top) and g in groups:
                refuse(g, "orphan %s (source %s %s) is a member of this group's replica: after a "
                          "key change it would become undecryptable; destroy or move it, or set "
                          "allow_orphans: true (R6)" % (t.name, s_name, why))

    def snap_of(name):
        return "%s@%s" % (name, snapshot)

    def src_snap(name):
        return None if new_snapshot else src.get(snap_of(name))

    def decrypted(d):
        """Encrypted data sent decrypted (raw: false, decrypt: true): ZFS refuses to send it
        with properties, so no -R; each dataset goes on its own, parent first, and is
        encrypted again under the target's encryption root (its structure is the target's)."""
        return d.encrypted and opts.raw is False and opts.decrypt

    # -- per member decisions
    for d in chosen:
        g = group_of(d)
        t_name = target_of(d.name)
        m = Member(d.name, t_name, g, snapshot=snap_of(d.name))
        decided[d.name] = m
        t = dst.get(t_name)
        parent_src = d.name.rsplit("/", 1)[0] if d.name != source_top else None
        if not new_snapshot and src_snap(d.name) is None:
            m.action, m.reason = "refused", "%s does not exist" % snap_of(d.name)
            refuse(g, m.reason)
            continue
        if t is None:
            parent_m = decided.get(parent_src) if parent_src else None
            if parent_m is not None and parent_m.action == "full" and not decrypted(d):
                m.action, m.reason, m.stream = "full", "in %s's -R stream" % parent_m.source, \
                    parent_m.stream
                continue
            if d.name == source_top and target_parent is None:
                m.action = "refused"
                m.reason = "the target's parent %s does not exist (import/attach its pool)" \
                    % t_name.rsplit("/", 1)[0]
                refuse(g, m.reason)
                continue
            if d.encrypted and not d.is_encryption_root and d.encryptionroot in src_names \
                    and not decrypted(d):
                m.action, m.reason = "full", "new member of %s: comes in the group's -R -I stream" % g
                continue
            per_dataset = not opts.recursive or decrypted(d)
            m.action, m.reason = "full", "seed" if per_dataset else "seed (-R stream)"
            left_out = [] if per_dataset else excluded_under(d.name)
            if left_out:
                m.action = "refused"
                m.reason = ("a -R seed of %s would also carry the excluded group(s) %s: ZFS 2.1 "
                            "cannot leave them out (R7); select whole subtrees" % (
                                d.name, ", ".join(left_out)))
                refuse(g, m.reason)
                continue
            names = [d.name] if per_dataset else subtree(d.name)
            raw = raw_for(names)
            if target_parent is not None and d.name == source_top and not raw \
                    and target_parent.encrypted and target_parent["keystatus"] != "available":
                m.action = "refused"
                m.reason = ("%s is encrypted: a non-raw receive into it needs its key loaded "
                            "(R9); give target_key_file (loaded for the receive, unloaded after) "
                            "or load it (blindvault.storage.zfs_key state: loaded)"
                            % target_parent.name)
                refuse(g, m.reason)
                continue
            send = ["zfs", "send"] + (["-w"] if raw else []) + \
                ([] if per_dataset else ["-R"]) + [snap_of(d.name)]
            m.stream = len(streams)
            streams.append(Stream(g, "full", send, [], names, t_name,
                                  _estimate(src, d.name, None, True) if new_snapshot else None,
                                  "referenced" if new_snapshot else ""))
            continue
        # the target exists
        if t["receive_resume_token"]:
            m.action, m.reason = "refused", "an interrupted receive is pending on %s" % t_name
            refuse(g, m.reason)
            continue
        if d.encrypted and t.encrypted and d.is_encryption_root != t.is_encryption_root \
                and not decrypted(d):
            m.reason = "structure differs (%s on the target, %s on the source)" % (
                "own encryption root" if t.is_encryption_root else "member",
                "own encryption root" if d.is_encryption_root else "member")
            if not d.is_encryption_root and g in src_names and t_name in resumed:
                m.action = "incremental"  # the group's -R -I stream puts it back under its root
            else:
                m.action = "refused"
                if d.is_encryption_root:
                    m.reason += ("; %s became its own encryption root at the source (zfs change-key "
                                 "there): every replica's structure must follow, with keys: on the "
                                 "replica load the keys of %s and %s and run zfs change-key with the "
                                 "same new key on %s; or destroy or rename %s and replicate again (R3)"
                                 % (d.name, t.encryptionroot, t_name, t_name, t_name))
                else:
                    m.reason += ("; %s joined its parent's encryption root at the source (zfs "
                                 "change-key -i), or the replica was seeded per dataset: on the "
                                 "replica load the keys of %s and %s and run zfs change-key -i %s; "
                                 "or destroy or rename %s and replicate again, it then comes back as "
                                 "a new member (R3)" % (d.name, target_of(g), t_name, t_name, t_name))
                refuse(g, m.reason)
                continue
        if d.encrypted != t.encrypted and not (d.encrypted and opts.decrypt) and not (
                not d.encrypted and t["keystatus"] == "available"):
            m.action = "refused"
            m.reason = "%s is %sencrypted but its target %s is %s" % (
                d.name, "" if d.encrypted else "not ", t_name,
                "encrypted (a non-raw receive into it needs its key loaded, R9: give "
                "target_key_file)" if t.encrypted
                else "not (only decrypt: true sends encrypted data decrypted)")
            refuse(g, m.reason)
            continue
        base, newer = _common_base(src, dst, d.name, t_name)
        if base is None:
            m.action = "refused"
            m.reason = ("%s and %s share no snapshot (by guid): nothing to send incrementally "
                        "from; rename or destroy %s to re-seed it (never done automatically)"
                        % (d.name, t_name, t_name))
            refuse(g, m.reason)
            continue
        m.base = base.name
        if not new_snapshot and base.name == snap_of(d.name) and not newer and not m.reason:
            m.action, m.reason = "up to date", "%s has %s" % (t_name, snapshot)
            continue
        if not new_snapshot and base.type == "snapshot" and \
                (base["createtxg"] or 0) >= (src_snap(d.name)["createtxg"] or 0) and not newer:
            m.action, m.reason = "up to date", "%s is at or past %s" % (t_name, snapshot)
            continue
        written = (t["written"] or 0) > 0
        if newer or written:
            what = (("snapshots newer than the base %s: %s" % (base.name, ", ".join(newer)))
                    if newer else "changes written since its last snapshot")
            if not opts.force_rollback:
                m.action = "refused"
                m.reason = ("%s has %s; receiving needs a rollback that destroys them: set "
                            "force_rollback: true (check mode lists what goes) (R4)" % (t_name, what))
                refuse(g, m.reason)
                continue
            m.destroys = newer or ["changes since %s" % dst.snapshots_of(t_name)[-1].name]
        m.action = "incremental"
        m.reason = m.reason or "from %s" % base.name

    def _steady(g, root):
        """Every dataset under the root is one incremental from the same base snapshot: one
        -R -I stream does it in one receive (one transaction sync instead of one per member)."""
        if root.action != "incremental" or root.destroys or not root.base or "@" not in root.base:
            return False
        base_short = root.base.split("@", 1)[1]
        names = subtree(g)
        if len(names) < 2 or excluded_under(g) or not src.get(g).encrypted or opts.raw is False:
            return False
        for name in names:
            mm = decided[name]
            if group_of(src.get(name)) in refused or mm.action != "incremental" or mm.destroys \
                    or mm.base != "%s@%s" % (name, base_short) or mm.reason.startswith("structure"):
                return False
        return True

    def _group_stream(g, root, base_short):
        names = subtree(g)
        send = ["zfs", "send"] + (["-w"] if raw_for(names) else []) + \
            ["-R", "-I", "@" + base_short, snap_of(g)]
        idx = len(streams)
        streams.append(Stream(g, "group", send, [], names, root.target,
                              sum(_estimate(src, n, src.get("%s@%s" % (n, base_short)), False) or 0
                                  for n in names) if new_snapshot else None,
                              "written" if new_snapshot else ""))
        for name in names:
            mm = decided[name]
            mm.stream = idx
            if mm.action == "up to date":
                mm.action = "incremental"
            if mm.action == "full" and not mm.reason.startswith("missing after"):
                mm.reason = "new member: in the group's -R -I stream from %s" % g
            elif mm.reason.startswith("structure"):
                mm.reason += "; the group's -R -I stream from %s restores it" % g

    # -- groups that go as one -R -I stream from their root: needed for new members and lost
    # hierarchy; chosen in the steady state when every member sits at the same base
    for g, ds in groups.items():
        if g not in included or g in refused or g not in src_names:
            continue
        root = decided.get(g)
        if root is None or root.action == "full":
            continue
        if root.stream is not None:
            continue  # already inside an enclosing group's stream
        needs = [decided[d.name] for d in ds if d.name != g and (
            (decided[d.name].action == "full" and decided[d.name].stream is None)
            or decided[d.name].reason.startswith("structure"))]
        if not needs:
            if _steady(g, root):
                _group_stream(g, root, root.base.split("@", 1)[1])
            continue
        reason = "%s: the group goes as one -R -I stream from %s" % (
            ", ".join(n.source for n in needs), g)
        left_out = excluded_under(g)
        if left_out:
            refuse(g, "%s, which would also carry the excluded group(s) %s (R7)"
                   % (reason, ", ".join(left_out)))
            continue
        if root.base is None or "@" not in root.base:
            refuse(g, "%s, which needs a common snapshot (not a bookmark) of %s" % (reason, g))
            continue
        existing = [decided[n] for n in subtree(g) if decided[n].base and "@" in decided[n].base]
        # the stream starts at the newest base any existing member has; members behind it
        # first catch up to it one by one (an interrupted -R stream leaves them uneven)
        base_short = max((m.base.split("@", 1)[1] for m in existing
                          if src.get("%s@%s" % (g, m.base.split("@", 1)[1])) is not None),
                         key=lambda short: src.get("%s@%s" % (g, short))["createtxg"] or 0)
        if base_short == snapshot:
            refuse(g, "%s, but %s is already at %s: it needs a newer snapshot from the origin "
                      "(replicate there first)" % (reason, root.target, snapshot))
            need_newer.append(g)
            continue
        lagging, catch_up = [], []
        for name in subtree(g):
            mm = decided[name]
            if mm.action == "full" or mm.reason.startswith("structure") and mm.base is None:
                continue
            want = src.get("%s@%s" % (name, base_short))
            t_snaps = dst.snapshots_of(mm.target)
            if want is not None and t_snaps and t_snaps[-1]["guid"] == want["guid"] \
                    and not mm.destroys:
                continue
            base = src.get(mm.base) if mm.base else None
            if want is not None and base is not None and base.type == "snapshot" \
                    and not mm.destroys and (base["createtxg"] or 0) < (want["createtxg"] or 0):
                catch_up.append((mm, want))
            else:
                lagging.append(mm.target)
        if lagging:
            refuse(g, "%s, which needs every existing member at %s; not there: %s"
                   % (reason, base_short, ", ".join(lagging)))
            continue
        for mm, want in catch_up:
            streams.append(Stream(g, "incremental", ["zfs", "send"] + (
                ["-w"] if raw_for([mm.source]) else []) + ["-I", mm.base, want.name], [],
                [mm.source], mm.target, None, ""))
        # Members missing on the target although they have the base snapshot (an interrupted
        # -R seed lost them): an -R -I stream cannot create them, so each goes alone at the
        # base (landing as its own encryption root for a moment), parents first; the group's
        # -R -I stream right after puts it back under its root (ZFS fixes the hierarchy of a
        # raw replication stream on receive).
        for name in subtree(g):
            mm = decided[name]
            at_base = src.get("%s@%s" % (name, base_short))
            if mm.action != "full" or mm.stream is not None or at_base is None:
                continue
            streams.append(Stream(g, "full", ["zfs", "send"] + (["-w"] if raw_for([name]) else [])
                                  + [at_base.name], [], [name], mm.target, None, ""))
            mm.reason = ("missing after an interrupted seed: sent alone at %s, then put under its "
                         "root by the group's -R -I stream" % at_base.name)
        _group_stream(g, root, base_short)

    # -- per-dataset incrementals, root first within each group
    for d in chosen:
        m = decided[d.name]
        if m.action != "incremental" or m.stream is not None or m.group in refused:
            continue
        base = src.get(m.base)
        raw = raw_for([d.name])
        flag = "-I" if base.type == "snapshot" else "-i"
        send = ["zfs", "send"] + (["-w"] if raw else []) + [flag, m.base, snap_of(d.name)]
        m.stream = len(streams)
        streams.append(Stream(m.group, "incremental", send, [], [d.name], m.target,
                              _estimate(src, d.name, base, False) if new_snapshot else None,
                              "written" if new_snapshot else ""))

    # -- receive commands
    for st in streams:
        first = src.get(st.datasets[0])
        recv = ["zfs", "recv", "-u"] + (["-s"] if opts.resume else [])
        m = decided[st.datasets[0]]
        if st.kind == "incremental" and m.destroys:
            recv.append("-F")
        props = {}
        carries_props = "-R" in (st.send or [])
        if not carries_props and first.encrypted and not decrypted(first):
            key_id = src.get(first.encryptionroot)[KEY_ID] if src.get(first.encryptionroot) \
                else first[KEY_ID]
            if key_id:
                props[KEY_ID] = key_id
        props[REPLICA_OF] = first.name
        if opts.replica_readonly:
            props["readonly"] = "on"
        props.update(opts.properties)
        for k in sorted(props):
            recv += ["-o", "%s=%s" % (k, props[k])]
        if carries_props and "mountpoint" not in opts.properties:
            recv += ["-x", "mountpoint"]
        if carries_props and not any(a == "-w" for a in st.send) and target_parent is not None \
                and target_parent.encrypted:
            recv += ["-x", "encryption"]  # encrypted on receive, under the target's root (R9)
        recv.append(st.target)
        st.recv = recv

    # a dataset whose parent's replica does not exist yet waits for its parent (pre-order)
    for d in chosen:
        parent = d.name.rsplit("/", 1)[0]
        m = decided[d.name]
        if m.group not in refused and parent in decided and target_of(parent) not in dst \
                and decided[parent].group in refused:
            refuse(m.group, "its parent %s is refused, so %s cannot be created" % (parent, m.target))
    # groups refused: nothing of theirs is sent
    for st in streams:
        if st.group in refused:
            st.status = "skipped"
            st.error = refused[st.group]
    for m in decided.values():
        if m.group in refused and m.action != "refused":
            m.action, m.reason = "refused", "its group %s is refused: %s" % (m.group, refused[m.group])

    take = None
    if new_snapshot:
        live = [d.name for d in chosen if group_of(d) not in refused]
        if live:
            if len(live) == len(subtree(source_top)) == len(members) and opts.recursive:
                take = ["zfs", "snapshot", "-r", snap_of(source_top)]
            else:
                take = ["zfs", "snapshot"] + [snap_of(n) for n in live]
    if top is not None and top[REPLICA_OF] and opts.snapshot:
        warnings.append("%s is a replica (of %s): no snapshot is taken on a replica (R2); sending "
                        "its newest shared snapshot %s" % (source_top, top[REPLICA_OF], snapshot))
    return ReplicationPlan(source_top, target_top, snapshot, take,
                           bool(top is not None and top[REPLICA_OF]),
                           [decided[d.name] for d in chosen], streams, refused, hazards, warnings,
                           need_newer)


# ---------------------------------------------------------------------------------------
# reading state and applying the plan


def _ancestors(name):
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _parse_sizes(text):
    """Total bytes from ``zfs send -nvP``/``-vP`` stderr (the ``size`` line)."""
    total = None
    for line in (text or "").splitlines():
        f = line.split("\t")
        if f[0] == "size" and len(f) > 1 and f[1].isdigit():
            total = int(f[1])
    return total


def resolve_tops(runner, opts):
    """(source tree, source top, target top, warnings): a source inside an encryption group
    is widened to the group's root and the target to the root's replica (R1)."""
    src = read_tree(runner, [opts.source], recursive=True, extra=SOURCE_EXTRA)
    s = src.get(opts.source)
    if s is None:
        raise Refusal("source %s does not exist" % opts.source)
    if s.type != "filesystem" and s.type != "volume":
        raise Refusal("source %s is a %s; name a filesystem or volume" % (opts.source, s.type))
    warnings = []
    if s.is_encryption_root and not opts.recursive:
        raise Refusal(
            "%s is an encryption root: recursive: false would send it without its members, and "
            "after a key change every member's replica becomes undecryptable (R1); replicate it "
            "with recursive: true" % opts.source)
    if s.encrypted and not s.is_encryption_root:
        root = s.encryptionroot
        rel = opts.source[len(root) + 1:]
        if not opts.target.endswith("/" + rel):
            raise Refusal(
                "%s is a member of encryption root %s's group: sent without %s and the rest of its "
                "group it becomes undecryptable on the replica after a key change (R1); replicate "
                "source: %s to that root's replica as target" % (opts.source, root, root, root))
        target_top = opts.target[:-len(rel) - 1]
        warnings.append("%s is a member of encryption root %s's group: replicating the whole group "
                        "from %s to %s, root first (R1)" % (opts.source, root, root, target_top))
        opts.recursive = True
        src = read_tree(runner, [root], recursive=True, extra=SOURCE_EXTRA)
        return src, root, target_top, warnings
    return src, opts.source, opts.target, warnings


def _choose_snapshot(src, top, opts, names, now):
    """(short name, still to be taken) per R2."""
    t = src.get(top)
    if t[REPLICA_OF]:
        shared = _newest_shared(src, names)
        if shared is None:
            raise Refusal("%s is a replica (of %s) and its datasets share no snapshot to relay; no "
                          "snapshot is taken on a replica (R2)" % (top, t[REPLICA_OF]))
        return shared, False
    short = time.strftime(opts.snapshot or DEFAULT_SNAPSHOT, time.gmtime(now))
    have = [n for n in names if "%s@%s" % (n, short) in src]
    if have and len(have) < len(names):
        raise Refusal("%s@%s exists on %d of %d datasets (missing on %s): the snapshot a group is "
                      "sent from must be one atomic snapshot; use another snapshot name format"
                      % (top, short, len(have), len(names),
                         ", ".join(sorted(set(names) - set(have))[:5])))
    return short, not have


def _holds_and_bookmarks(plan, src, dst, opts, done_members):
    """Bookmark each sent snapshot; move the hold tags to the new common bases (R4)."""
    steps = []
    if not done_members:
        return steps
    if opts.bookmark:
        for m in done_members:
            bm = m.snapshot.replace("@", "#", 1)
            if bm not in src:
                steps.append(["zfs", "bookmark", m.snapshot, bm])
    if opts.hold:
        for side, tree, tag, snaps in (
                ("source", src, HOLD_PREFIX + plan.target_top, [m.snapshot for m in done_members]),
                ("target", dst, HOLD_PREFIX + plan.source_top,
                 ["%s@%s" % (m.target, plan.snapshot) for m in done_members])):
            lacking = [s for s in snaps if tag not in tree.holds.get(s, [])]
            if lacking:
                steps.append(["zfs", "hold", tag] + lacking)
            datasets = {s.split("@", 1)[0] for s in snaps}
            old = sorted(s for s, tags in tree.holds.items()
                         if tag in tags and s.split("@", 1)[0] in datasets and s not in snaps)
            if old:
                steps.append(["zfs", "release", tag] + old)
    return steps


def _target_key(runner, opts, dst, anc, target_top):
    """The target's encryption root whose key ``target_key_file`` loads for this run's non-raw
    receives (R9), or None (no file given, the target is not encrypted, or its key is loaded
    already). The key is proven first (``zfs load-key -n``, check mode too); the planner then
    sees the key as loaded."""
    if not opts.target_key_file:
        return None
    t = dst.get(target_top) or anc.get(target_top.rsplit("/", 1)[0])
    if t is None or not t.encrypted:
        return None
    root = t.encryptionroot
    rec = dst.get(root) or anc.get(root)
    if rec is None or rec["keystatus"] == "available":
        return None
    path = opts.target_key_file
    if not os.path.isabs(path) or not os.path.isfile(path):
        raise Refusal("target_key_file %s: an absolute path to an existing key file is needed" % path)
    res = runner.run(["zfs", "load-key", "-n", "-L", "file://" + path, root], check=False)
    if res.rc != 0:
        raise Refusal("target_key_file %s does not open the key of %s (the target's encryption "
                      "root): %s" % (path, root, (res.stderr or res.stdout).strip()))
    _as_loaded(root, dst, anc)
    return root


def _as_loaded(root, *trees):
    """The planner sees ``root``'s key as loaded (target_key_file loads it for the receives)."""
    for tree in trees:
        for d in tree.datasets:
            if d.encryptionroot == root:
                d.props["keystatus"] = "available"


def _unload(runner, root, warnings):
    gone = runner.run(["zfs", "unload-key", root], changes=True, check=False)
    if gone.rc != 0:
        warnings.append("the key of %s was loaded for the receive and could not be unloaded: %s"
                        % (root, (gone.stderr or gone.stdout).strip()))


def replicate(runner, opts, now=None):
    validate(opts)
    now = time.time() if now is None else now
    src, source_top, target_top, warnings = resolve_tops(runner, opts)
    anc = read_tree(runner, _ancestors(target_top), recursive=False, types="filesystem,volume",
                    with_holds=False)
    target_parent = anc.get(target_top.rsplit("/", 1)[0])
    dst = read_tree(runner, [target_top], recursive=True, extra=TARGET_EXTRA)
    key_root = _target_key(runner, opts, dst, anc, target_top)
    result = {"source": source_top, "target": target_top, "resumed": [], "warnings": warnings}

    # interrupted receives first: resume them (or abort with resume: false), then re-read
    tokens = [t for t in dst.datasets if t["receive_resume_token"]]
    preloaded = None
    if tokens and key_root and opts.resume and not runner.check_mode:
        # a resumed non-raw receive into the encrypted target needs its key as much as a new one
        runner.run(["zfs", "load-key", "-L", "file://" + opts.target_key_file, key_root], changes=True)
        preloaded = result["target_key_loaded"] = key_root
    if tokens:
        for t in tokens:
            if opts.resume:
                runner.pipeline([["zfs", "send", "-t", t["receive_resume_token"]],
                                 ["zfs", "recv", "-u", "-s", t.name]], changes=True)
                result["resumed"].append(t.name)
            else:
                runner.run(["zfs", "recv", "-A", t.name], changes=True)
                result.setdefault("aborted", []).append(t.name)
        if not runner.check_mode:
            dst = read_tree(runner, [target_top], recursive=True, extra=TARGET_EXTRA)
            if key_root:
                _as_loaded(key_root, dst)

    names = [d.name for d in src.datasets
             if d.name == source_top or (opts.recursive and d.name.startswith(source_top + "/"))]
    short, new = _choose_snapshot(src, source_top, opts, names, now)
    plan = plan_replication(src, dst, opts, source_top, target_top, short, new, target_parent,
                            result["resumed"])
    if plan.need_newer and not plan.source_is_replica and not new:
        # An interrupted -R seed (a power cut, say) resumed for the root alone: the members
        # come only in an -R -I stream from that snapshot to a newer one, which an original
        # source can take now (a relay cannot: it says to replicate at the origin first).
        fresh = "%s-%s" % (short, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)))
        if "%s@%s" % (source_top, fresh) not in src and SNAPSHOT_NAME.match(fresh):
            warnings.append("%s: its root is at @%s but members are missing (an interrupted seed); a new "
                            "snapshot @%s carries them under their root in one -R -I stream (R1)"
                            % (", ".join(plan.need_newer), short, fresh))
            short, new = fresh, True
            plan = plan_replication(src, dst, opts, source_top, target_top, short, new, target_parent,
                                    result["resumed"])
    result.update(snapshot=short, snapshot_taken=False, source_is_replica=plan.source_is_replica)
    warnings += plan.warnings
    changed = bool(result["resumed"] or result.get("aborted"))

    if runner.check_mode:
        for st in plan.streams:
            if st.status == "planned" and not new:
                est = runner.run(["zfs", "send", "-nvP"] + st.send[2:], check=False)
                st.bytes_estimated, st.estimate_from = _parse_sizes(est.stdout + est.stderr), "send -nvP"
        changed = changed or any(st.status == "planned" for st in plan.streams)
    elif plan.streams or plan.take_snapshot:
        if plan.take_snapshot and any(st.status == "planned" for st in plan.streams):
            runner.run(plan.take_snapshot, changes=True)
            result["snapshot_taken"] = True
            changed = True
        failed_groups = {}
        load = key_root if any(st.status == "planned" and "-w" not in st.send for st in plan.streams) else None
        if load and not preloaded:  # non-raw receives are encrypted under the target's root: its key, for them only
            runner.run(["zfs", "load-key", "-L", "file://" + opts.target_key_file, load], changes=True)
            result["target_key_loaded"] = load
        load = load or preloaded
        try:
            for st in plan.streams:
                if st.status != "planned":
                    continue
                if st.group in failed_groups:
                    st.status, st.error = "skipped", "group %s failed earlier in this run (R5)" % st.group
                    continue
                send = st.send[:2] + ["-v", "-P"] + st.send[2:]
                if opts.progress_file:
                    with open(opts.progress_file, "ab") as f:
                        f.write(("# %s\n" % st.command).encode())
                try:
                    res = runner.pipeline([send, st.recv], changes=True, stderr_file=opts.progress_file)
                except CommandError as exc:
                    st.status, st.error = "failed", str(exc)
                    failed_groups[st.group] = str(exc)
                    changed = True
                    continue
                st.status, st.seconds = "done", res.seconds
                st.bytes_estimated, st.estimate_from = _parse_sizes(res.stderrs[0]), "send -vP"
                changed = True
        finally:
            if load:
                _unload(runner, load, warnings)
            preloaded = None
        for m in plan.members:
            if m.stream is not None:
                st = plan.streams[m.stream]
                if st.status in ("failed", "skipped") and m.action != "refused":
                    m.action, m.reason = st.status, st.error
        done = [m for m in plan.members if m.stream is not None
                and plan.streams[m.stream].status == "done"]
        done += [m for m in plan.members if m.action == "up to date"
                 and m.group not in failed_groups and m.group not in plan.refused]
        # Marks come from the state read before sending: a snapshot a stream just made has no
        # bookmark or hold yet, and the old holds were read with the trees.
        sent = {m.source for m in done if m.action != "up to date"}
        marks = _holds_and_bookmarks(plan, src, dst, opts,
                                     _missing_marks(done, src, dst, plan, opts, sent))
        run_commands(runner, marks)
        changed = changed or bool(marks)
        if changed:
            dst = read_tree(runner, [target_top], recursive=True, with_holds=False)
    if preloaded:  # loaded for a resume, and nothing was sent after it
        _unload(runner, preloaded, warnings)
    after = dst
    hazards = plan.hazards + tree_hazards(after)
    if not (opts.raw is False and opts.decrypt):  # decrypted copies have the target's structure
        hazards += compare_hazards(src, source_top, after, target_top)
    failed = {st.group: st.error for st in plan.streams if st.status == "failed"}
    result.update(
        changed=changed,
        datasets=[m.as_dict() for m in plan.members],
        streams=[st.as_dict() for st in plan.streams],
        refused=plan.refused,
        failed=failed,
        hazards=hazards,
        snapshot_command=" ".join(plan.take_snapshot) if plan.take_snapshot else None,
    )
    return result


def _missing_marks(done, src, dst, plan, opts, sent=()):
    """Members whose bookmark or holds are not in place yet (a re-run adds nothing).

    ``sent``: members a stream of this run delivered, so their snapshot exists on both sides
    although the trees (read before sending) do not show it yet.
    """
    need = []
    for m in done:
        snap = "%s@%s" % (m.source, plan.snapshot)
        tsnap = "%s@%s" % (m.target, plan.snapshot)
        if m.source not in sent and (snap not in src or tsnap not in dst):
            continue
        m.snapshot = snap
        missing = opts.bookmark and snap.replace("@", "#", 1) not in src
        missing = missing or (opts.hold and (
            HOLD_PREFIX + plan.target_top not in src.holds.get(snap, [])
            or HOLD_PREFIX + plan.source_top not in dst.holds.get(tsnap, [])))
        stale = opts.hold and any(
            s != snap and s.split("@", 1)[0] == m.source and HOLD_PREFIX + plan.target_top in tags
            for s, tags in src.holds.items())
        if missing or stale:
            need.append(m)
    return need
