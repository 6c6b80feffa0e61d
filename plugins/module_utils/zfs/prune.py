# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_prune's backend: snapshot retention that never destroys a replica's last common base.

Read the source tree once (``creation`` and ``clones`` with it, holds when any exist) and
every listed target in one more ``zfs list``, decide per dataset (``plan_prune``, pure),
then apply: bookmarks first (one ``zfs bookmark`` each, ZFS 2.1 takes one per process),
then one ``zfs destroy DS@a,b,c`` per dataset (ZFS destroys such a list atomically).

A matching snapshot stays when a retention rule keeps it (``keep_last``, one per hour, day,
ISO week, month or year for the last N such periods that have snapshots), and whatever the
rules say when it is:

* the dataset's newest snapshot (the base of its next incremental send, on a carrier also
  the base of the upstream replication);
* the newest snapshot shared (by guid) with a listed target's replica of the dataset (R4);
* the snapshot an interrupted receive on a listed target is resuming to;
* held (any tag, never released here), or the origin of a clone.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ansible_collections.blindvault.storage.plugins.module_utils.plan import (
    PartialApply,
    Plan,
    Refusal,
)
from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import valid_name
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.apply import run_commands
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import Tree, read_tree

SOURCE_EXTRA = ("creation", "clones")
RULES = ("keep_last", "hourly", "daily", "weekly", "monthly", "yearly")
PERIODS = ("hourly", "daily", "weekly", "monthly", "yearly")
# One argv string may not exceed MAX_ARG_STRLEN (128 KiB on Linux): longer snapshot lists
# are destroyed in several commands.
MAX_ARG = 100000


@dataclass
class Options:
    name: str
    recursive: bool = False
    keep_last: Optional[int] = None
    hourly: Optional[int] = None
    daily: Optional[int] = None
    weekly: Optional[int] = None
    monthly: Optional[int] = None
    yearly: Optional[int] = None
    match: str = "*"
    bookmark_before_destroy: bool = True
    targets: List[str] = field(default_factory=list)
    utc: bool = False

    @classmethod
    def from_params(cls, params):
        known = cls.__dataclass_fields__
        opts = cls(**{k: v for k, v in params.items() if k in known and v is not None})
        opts.targets = list(opts.targets or [])
        return opts


def validate(opts):
    """Refuse bad input before anything is read or touched."""
    if not valid_name(opts.name):
        raise Refusal("%r is not a dataset name (pool/path, without @ or #)" % (opts.name,))
    given = [r for r in RULES if getattr(opts, r) is not None]
    if not given:
        raise Refusal("no retention rule given: set keep_last, hourly, daily, weekly, monthly or "
                      "yearly (with no rule every matching snapshot but the newest would go)")
    for r in given:
        value = getattr(opts, r)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise Refusal("%s must be a whole number of at least 0, got %r" % (r, value))
    if not opts.match:
        raise Refusal("match must be a glob on the snapshot's short name, e.g. 'autosnap_*'")
    seen = set()
    for t in opts.targets:
        if not valid_name(t):
            raise Refusal("target %r is not a dataset name (pool/path, without @ or #)" % (t,))
        if t in seen:
            raise Refusal("target %s is listed more than once" % t)
        seen.add(t)
        if t == opts.name or t.startswith(opts.name + "/") or opts.name.startswith(t + "/"):
            raise Refusal("target %s overlaps %s: a target is a replica elsewhere (another pool or "
                          "tree), not the pruned tree itself" % (t, opts.name))


def _short(snap):
    return snap.name.split("@", 1)[1]


def _index(entries):
    """{dataset: [its snapshots or bookmarks, oldest first]} in one pass (Tree.snapshots_of
    scans the whole tree per call: too slow for thousands of snapshots in hundreds of datasets)."""
    found = {}
    for e in entries:
        found.setdefault(e.dataset, []).append(e)
    for group in found.values():
        group.sort(key=lambda d: d["createtxg"] or 0)
    return found


def period_key(rule, creation, utc=False):
    """The period (hour, day, ISO week, month, year) a ``creation`` time falls in."""
    t = time.gmtime(creation) if utc else time.localtime(creation)
    if rule == "hourly":
        # tm_isdst keeps the hour repeated when local clocks go back apart
        return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_isdst if not utc else 0)
    if rule == "daily":
        return (t.tm_year, t.tm_mon, t.tm_mday)
    if rule == "weekly":
        return tuple(datetime.date(t.tm_year, t.tm_mon, t.tm_mday).isocalendar()[:2])
    if rule == "monthly":
        return (t.tm_year, t.tm_mon)
    return (t.tm_year,)


def retained(cands, opts):
    """{snapshot name: [rules keeping it]} for candidates (oldest first, by createtxg)."""
    reasons = {}
    newest_first = list(reversed(cands))
    if opts.keep_last:
        for s in newest_first[:opts.keep_last]:
            reasons.setdefault(s.name, []).append("keep_last")
    for rule in PERIODS:
        count = getattr(opts, rule)
        if not count:
            continue
        seen = set()
        for s in newest_first:
            if s["creation"] is None:
                raise Refusal("%s has no creation time: the tree was read without it" % s.name)
            key = period_key(rule, s["creation"], opts.utc)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > count:
                break
            reasons.setdefault(s.name, []).append(rule)  # the newest of its period
    return reasons


@dataclass
class PrunePlan:
    """What ``plan_prune`` decided. ``kept``: {snapshot: [reasons]} for candidates that stay."""

    plan: Plan
    datasets: List[str] = field(default_factory=list)
    destroy: Dict[str, List[str]] = field(default_factory=dict)
    kept: Dict[str, List[str]] = field(default_factory=dict)
    held: Dict[str, List[str]] = field(default_factory=dict)
    bookmarks: List[str] = field(default_factory=list)
    bases: List[dict] = field(default_factory=list)

    @property
    def destroyed(self):
        return [s for ds in self.datasets for s in self.destroy.get(ds, [])]


def _protected(snaps_of, targets, opts, datasets, resume):
    """({snapshot: [reasons]} for target bases and resume points, bases, warnings)."""
    reasons, bases, warnings, problems = {}, [], [], []
    tsnaps_of = _index(targets.snapshots)
    for target in opts.targets:
        if targets.get(target) is None:
            problems.append("target %s does not exist (import its pool, or remove it from targets)"
                            % target)
            continue
        unreplicated = []
        for ds in datasets:
            tname = target + ds[len(opts.name):]
            snaps = snaps_of.get(ds, [])
            if targets.get(tname) is None:
                if snaps:
                    unreplicated.append(ds)
                continue
            if not snaps:
                continue
            tguids = {t["guid"] for t in tsnaps_of.get(tname, [])}
            base = next((s for s in reversed(snaps) if s["guid"] in tguids), None)
            if base is not None:
                reasons.setdefault(base.name, []).append("base of %s" % tname)
                bases.append({"target": tname, "snapshot": base.name})
            to_guid = resume.get(tname)
            upcoming = next((s for s in snaps if s["guid"] == to_guid), None) if to_guid else None
            if upcoming is not None:
                reasons.setdefault(upcoming.name, []).append("resume of %s" % tname)
            elif base is None:  # (an interrupted seed shares nothing yet: its resume point stays)
                problems.append(
                    "%s and its replica %s share no snapshot (by guid): no incremental can reach "
                    "that replica whatever is pruned; re-seed it or remove %s from targets"
                    % (ds, tname, target))
        if unreplicated:
            warnings.append("no replica on %s of %s: nothing kept for it there"
                            % (target, ", ".join(unreplicated)))
    if problems:
        raise Refusal("; ".join(problems))
    return reasons, bases, warnings


def _destroy_argvs(ds, shorts):
    """``zfs destroy DS@a,b,c``, split so that no argument exceeds MAX_ARG."""
    argvs, cur, size = [], [], len(ds) + 1
    for short in shorts:
        if cur and size + 1 + len(short) > MAX_ARG:
            argvs.append(["zfs", "destroy", "%s@%s" % (ds, ",".join(cur))])
            cur, size = [], len(ds) + 1
        size += len(short) + (1 if cur else 0)
        cur.append(short)
    if cur:
        argvs.append(["zfs", "destroy", "%s@%s" % (ds, ",".join(cur))])
    return argvs


def plan_prune(tree, targets, opts, now=None, resume=None):
    """Decide what goes and what stays, and why (pure).

    ``tree``: the source (with ``creation``, ``clones`` and holds); ``targets``: one Tree
    holding every listed target; ``resume``: {target dataset: guid an interrupted receive
    resumes to}. Raises Refusal before anything is touched.
    """
    validate(opts)
    now = time.time() if now is None else now
    top = tree.get(opts.name)
    if top is None:
        raise Refusal("dataset %s does not exist" % opts.name)
    if top.type not in ("filesystem", "volume"):
        raise Refusal("%s is a %s; name a filesystem or volume" % (opts.name, top.type))
    datasets = [opts.name] + ([d.name for d in tree.children(opts.name)] if opts.recursive else [])
    snaps_of, marks_of = _index(tree.snapshots), _index(tree.bookmarks)
    protect, bases, warnings = _protected(snaps_of, targets, opts, datasets, resume or {})
    pp = PrunePlan(Plan(), datasets=datasets, bases=bases)
    for w in warnings:
        pp.plan.warn(w)
    conflicts = []
    destroy_steps = []
    for ds in datasets:
        snaps = snaps_of.get(ds, [])
        if not snaps:
            continue
        cands = [s for s in snaps if fnmatch.fnmatchcase(_short(s), opts.match)]
        future = [s.name for s in cands if (s["creation"] or 0) > now + 300]
        if future:
            pp.plan.warn("%s: creation time in the future (clock?): %s"
                         % (ds, ", ".join(future[:5])))
        keep = retained(cands, opts)
        marks = {b["guid"] for b in marks_of.get(ds, [])}
        going = []
        for s in cands:
            why = list(keep.get(s.name, []))
            if s is snaps[-1]:
                why.append("newest")
            why += protect.get(s.name, [])
            if s["clones"]:
                why.append("origin of %s" % s["clones"])
            if (s["userrefs"] or 0) > 0:
                if not why:
                    pp.held[s.name] = list(tree.holds.get(s.name, []))
                why.append("held")
            if why:
                pp.kept[s.name] = why
            else:
                going.append(s)
        if not going:
            continue
        pp.destroy[ds] = [s.name for s in going]
        if opts.bookmark_before_destroy:
            for s in going:
                if s["guid"] in marks:
                    continue  # a bookmark of this very snapshot exists already (any name)
                bm = "%s#%s" % (ds, _short(s))
                if bm in tree:
                    conflicts.append("%s exists but marks another snapshot (guid %s, %s has %s)"
                                     % (bm, tree.get(bm)["guid"], s.name, s["guid"]))
                    continue
                pp.bookmarks.append(bm)
                pp.plan.add("bookmark", bm, "keep an incremental base of %s" % s.name,
                            ["zfs", "bookmark", s.name, bm])
        for argv in _destroy_argvs(ds, [_short(s) for s in going]):
            destroy_steps.append((ds, argv))
    if conflicts:
        more = " (and %d more)" % (len(conflicts) - 5) if len(conflicts) > 5 else ""
        raise Refusal("cannot bookmark before destroying: %s%s; destroy or rename those bookmarks "
                      "(blindvault.storage.zfs_bookmark), or set bookmark_before_destroy: false"
                      % ("; ".join(conflicts[:5]), more))
    for ds, argv in destroy_steps:
        n = argv[2].count(",") + 1
        pp.plan.add("destroy", ds, "%d snapshot(s) no rule keeps" % n, argv)
    return pp


# reading state and applying the plan

TOGUID = re.compile(r"^\s*toguid\s*=\s*(0x[0-9a-fA-F]+|\d+)\s*$", re.M)


def resume_guids(runner, targets):
    """{target dataset: toguid} of interrupted receives (``zfs send -nvt`` decodes a token)."""
    found = {}
    for d in targets.datasets:
        token = d["receive_resume_token"]
        if not token:
            continue
        res = runner.run(["zfs", "send", "-nvt", token], check=False)
        m = TOGUID.search(res.stdout + "\n" + res.stderr)
        if m:
            found[d.name] = int(m.group(1), 0)
    return found


def _snapshot_lists(tree, datasets, gone=(), new_marks=()):
    snaps_of, marks_of = _index(tree.snapshots), _index(tree.bookmarks)
    snaps = [s.name for ds in datasets for s in snaps_of.get(ds, []) if s.name not in gone]
    marks = [b.name for ds in datasets for b in marks_of.get(ds, [])] + list(new_marks)
    return {"snapshots": snaps, "bookmarks": sorted(marks)}


def prune(runner, opts, now=None):
    """Read, plan, apply. Returns the module's result (``diff`` included)."""
    validate(opts)
    tree = read_tree(runner, [opts.name], recursive=opts.recursive, extra=SOURCE_EXTRA)
    targets = Tree(())
    if opts.targets:
        targets = read_tree(runner, opts.targets, recursive=opts.recursive, with_holds=False)
    pp = plan_prune(tree, targets, opts, now, resume_guids(runner, targets))
    if pp.plan.steps and not runner.check_mode:
        left = {}
        for step in pp.plan.steps:
            if step.action == "destroy":
                left[step.obj] = left.get(step.obj, 0) + 1
        done = []

        def took_effect(i):
            step = pp.plan.steps[i]
            if step.action == "destroy":
                left[step.obj] -= 1
                if not left[step.obj]:
                    done.append(step.obj)  # every snapshot of it that was to go is gone

        try:
            run_commands(runner, [step.argv for step in pp.plan.steps], took_effect)
        except CommandError as exc:
            raise PartialApply(exc, done) from None
    gone = set(pp.destroyed)
    return {
        "changed": pp.plan.changed,
        "name": opts.name,
        "destroyed": pp.destroyed,
        "kept": [{"name": n, "reasons": r} for n, r in pp.kept.items()],
        "held": [{"name": n, "tags": t} for n, t in pp.held.items()],
        "bookmarks": pp.bookmarks,
        "bases": pp.bases,
        "actions": pp.plan.as_list(),
        "warnings": pp.plan.warnings,
        "diff": {"before": _snapshot_lists(tree, pp.datasets),
                 "after": _snapshot_lists(tree, pp.datasets, gone, pp.bookmarks)},
    }
