# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_stream: an encryption group's raw send streams as signed age files, and back.

Export plans with zfs_replicate's own planner (:func:`..replication.plan_replication`), so a
package obeys the same rules as live replication: the unit is a whole encryption group, root
first, from one atomic snapshot (R1, R2). What the receiving site (``target_id``) holds is not
visible from here; it is what earlier packages carried, recorded on the source by bookmarks
``DATASET#bvs.<target_id>.<snapshot>`` made once a package is complete. The planner sees a
stand-in target tree built from them, so it chooses full or incremental exactly as it would
against a live replica.

Import checks every manifest's signature, the chain of every pending package against the
target (each incremental's base must be the target's newest snapshot, by guid), every file's
hash and its signed age header before anything is received; then each stream is decrypted
into ``zfs recv`` (:mod:`.package`). A package whose snapshots the target already has is skipped (by guid), so a
second run changes nothing.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import List, Optional

from ansible_collections.blindvault.storage.plugins.module_utils.keys import age, signing
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import package
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.apply import run_commands
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import valid_name
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.hazards import tree_hazards
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.replication import (
    SOURCE_EXTRA,
    SNAPSHOT_NAME,
    Options,
    _choose_snapshot,
    plan_replication,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import (
    KEY_ID,
    REPLICA_OF,
    Dataset,
    Tree,
    read_tree,
)

TARGET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MARK_PREFIX = "bvs."


@dataclass
class ExportOptions:
    dataset: str
    target_id: str
    directory: str
    recipients: List[str]
    signing_key: str
    snapshot: Optional[str] = None


@dataclass
class ImportOptions:
    dataset: str
    target: str
    directory: str
    trusted_signers: List[str] = field(default_factory=list)
    identity_file: str = ""
    allow_unsigned: bool = False


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Refusal("%s %s cannot be read: %s" % (what, path, exc.strerror or exc)) from None


def _directory(path):
    if not path or not os.path.isabs(path):
        raise Refusal("directory %r: an absolute path is needed" % (path,))
    if not os.path.isdir(path):
        raise Refusal("directory %s does not exist (mount the carrier's filesystem first)" % path)


def mark_name(dataset, target_id, snapshot):
    return "%s#%s%s.%s" % (dataset, MARK_PREFIX, target_id, snapshot)


def recorded_target(src, root, target_id):
    """A stand-in for ``target_id``'s copy of ``root``'s tree: each member that a package
    carried, at the snapshot its newest ``bvs.<target_id>.*`` bookmark marks."""
    prefix = "#%s%s." % (MARK_PREFIX, target_id)
    entries = []
    for d in src.datasets:
        if d.name != root and not d.name.startswith(root + "/"):
            continue
        marks = [b for b in src.bookmarks_of(d.name) if ("#" + b.name.split("#", 1)[1]).startswith(prefix)]
        if not marks:
            continue
        newest = marks[-1]
        short = newest.name.split(prefix, 1)[1]
        props = {k: d[k] for k in ("encryption", "encryptionroot", "keyformat", "pbkdf2iters",
                                   "pbkdf2salt", KEY_ID)}
        props.update(keystatus="unavailable", written=0, receive_resume_token=None)
        entries.append(Dataset(d.name, d.type, props))
        entries.append(Dataset("%s@%s" % (d.name, short), "snapshot",
                               {"guid": newest["guid"], "createtxg": newest["createtxg"]}))
    return Tree(tuple(entries))


def _widen(runner, dataset):
    """(tree, group root, warnings): a dataset inside an encryption group stands for the
    whole group (R1)."""
    src = read_tree(runner, [dataset], recursive=True, extra=SOURCE_EXTRA)
    d = src.get(dataset)
    if d is None or d.type not in ("filesystem", "volume"):
        raise Refusal("dataset %s does not exist (or is not a filesystem or volume)" % dataset)
    if d.encrypted and not d.is_encryption_root:
        root = d.encryptionroot
        return (read_tree(runner, [root], recursive=True, extra=SOURCE_EXTRA), root,
                ["%s is a member of encryption root %s's group: exporting the whole group, root "
                 "first (R1)" % (dataset, root)])
    return src, dataset, []


def _newest(src, name):
    snaps = src.snapshots_of(name)
    return snaps[-1].name.split("@", 1)[1] if snaps else None


def _nothing_new(src, stand_in, names):
    """Every dataset of the group already travelled at its newest snapshot and nothing was
    written since: a new snapshot would carry nothing (so none is taken, no package written)."""
    for n in names:
        snaps, sent = src.snapshots_of(n), stand_in.snapshots_of(n)
        if not snaps or not sent or snaps[-1]["guid"] != sent[-1]["guid"] or src.get(n)["written"]:
            return False
    return True


def export(runner, o, now=None):
    """Write the package that brings ``target_id`` up to date with ``o.dataset``'s group."""
    if not valid_name(o.dataset):
        raise Refusal("dataset %r is not a dataset name (pool/dataset)" % (o.dataset,))
    if not TARGET_ID.match(o.target_id or ""):
        raise Refusal("target_id %r: 1 to 64 letters, digits, _ and - (it names bookmarks)" % (o.target_id,))
    if not o.recipients:
        raise Refusal("recipients: at least one age X25519 recipient (age1...) is needed")
    for r in o.recipients:
        try:
            age.parse_recipient(r)
        except age.RecipientError as exc:
            raise Refusal("recipients: %s" % exc) from None
    try:
        key = signing.load_private_key(_read(o.signing_key, "signing_key"), "signing_key %s" % o.signing_key)
    except signing.SignatureError as exc:
        raise Refusal(str(exc)) from None
    if o.snapshot is not None and not SNAPSHOT_NAME.match(time.strftime(o.snapshot, time.gmtime(0))):
        raise Refusal("snapshot %r does not make a valid snapshot name" % o.snapshot)
    _directory(o.directory)

    now = time.time() if now is None else now
    # ``written`` (is there anything new?) counts synced transaction groups only: data written
    # a moment ago shows after a sync
    runner.run(["zpool", "sync", o.dataset.split("/", 1)[0]])
    src, root, warnings = _widen(runner, o.dataset)
    names = [d.name for d in src.datasets if d.name == root or d.name.startswith(root + "/")]
    ropts = Options(source=root, target=root, recursive=True, snapshot=o.snapshot, hold=False,
                    bookmark=False, resume=False)
    short, new = _choose_snapshot(src, root, ropts, names, now)
    stand_in = recorded_target(src, root, o.target_id)
    if new and _nothing_new(src, stand_in, names):
        return {"dataset": root, "target_id": o.target_id, "snapshot": _newest(src, root), "warnings": warnings,
                "package": None, "datasets": [], "streams": [], "snapshot_taken": False, "changed": False}
    stand_in_parent = Dataset(root.rsplit("/", 1)[0], "filesystem", {"encryption": "off"})
    plan = plan_replication(src, stand_in, ropts, root, root, short, new, stand_in_parent)
    if plan.refused:
        raise Refusal("; ".join("%s: %s" % kv for kv in sorted(plan.refused.items())))
    planned = [st for st in plan.streams if st.status == "planned"]
    name = "%s_%s@%s" % (o.target_id, root.replace("/", "%"), short)
    result = {"dataset": root, "target_id": o.target_id, "snapshot": short, "warnings": warnings + plan.warnings,
              "package": os.path.join(o.directory, name) if planned else None,
              "datasets": [m.as_dict() for m in plan.members],
              "streams": [{"file": package.file_name(i, st.datasets[0]), "kind": st.kind,
                           "datasets": st.datasets, "command": " ".join(st.send),
                           "bytes_estimated": st.bytes_estimated} for i, st in enumerate(planned)],
              "snapshot_taken": False, "changed": bool(planned)}
    if not planned:
        return result
    if os.path.lexists(os.path.join(o.directory, name)):
        raise Refusal("%s already exists but %s still needs it: it was written, and its marks were "
                      "not made (an interrupted run?); move it away and run again"
                      % (os.path.join(o.directory, name), o.target_id))
    if runner.check_mode:
        return result
    if plan.take_snapshot:
        runner.run(plan.take_snapshot, changes=True)
        result["snapshot_taken"] = True
    after = read_tree(runner, [root], recursive=True, with_holds=False)
    specs = []
    for st in planned:
        upto = st.send[-1].split("@", 1)[1]  # a catch-up stream ends before the new snapshot
        base = None
        if st.kind == "group":
            base = "%s@%s" % (st.datasets[0], st.send[st.send.index("-I") + 1].lstrip("@"))
        elif st.kind == "incremental":
            base = st.send[-2]
        base_rec = after.get(base) if base else None
        er = src.get(src.get(st.datasets[0]).encryptionroot or st.datasets[0])
        specs.append(package.StreamSpec(
            st.send, st.kind, st.datasets, upto,
            {n: str(after.get("%s@%s" % (n, upto))["guid"]) for n in st.datasets},
            re.split("[@#]", base, maxsplit=1)[1] if base else None,
            str(base_rec["guid"]) if base_rec is not None else None,
            er[KEY_ID] if er is not None and er.encrypted else None))
    manifest = package.write_package(
        runner, o.directory, name, specs, o.recipients, key,
        {"group": root, "target_id": o.target_id, "snapshot": short, "source_host": socket.gethostname()})
    sent = sorted({n for st in planned for n in st.datasets}, key=lambda n: n.split("/"))
    run_commands(runner, [["zfs", "bookmark", "%s@%s" % (n, short), mark_name(n, o.target_id, short)]
                          for n in sent])
    result["streams"] = [dict(s, bytes=e["bytes"], sha256=e["sha256"], stream_bytes=e["stream_bytes"])
                         for s, e in zip(result["streams"], manifest["streams"])]
    return result


def _identities(path):
    text = _read(path, "identity_file")
    try:
        return age.parse_identities(text.decode("utf-8", "replace"))
    except age.AgeFileError as exc:
        raise Refusal("identity_file %s: %s" % (path, exc)) from None


def _newest_guid(tree, name):
    snaps = tree.snapshots_of(name)
    return str(snaps[-1]["guid"]) if snaps else None


def _check_entries(path, m, group):
    """A signed manifest is trusted, and still checked: names under the group, known kinds."""
    for e in m["streams"]:
        ds = e.get("datasets") if isinstance(e, dict) else None
        if not ds or not isinstance(e.get("guids"), dict) or e.get("kind") not in ("full", "incremental", "group") \
                or not all(isinstance(n, str) and valid_name(n) and (n == group or n.startswith(group + "/"))
                           for n in list(ds) + list(e["guids"])):
            raise Refusal("%s: the manifest names a stream outside group %s or of an unknown kind; "
                          "nothing was received" % (os.path.basename(path), group))


def recv_argv(entry, target):
    argv = ["zfs", "recv", "-u", "-o", "readonly=on", "-o", "%s=%s" % (REPLICA_OF, entry["datasets"][0])]
    carries_props = " -R " in " %s " % entry.get("send", "")
    if entry.get("key_id") and not carries_props:
        argv += ["-o", "%s=%s" % (KEY_ID, entry["key_id"])]
    if carries_props:
        argv += ["-x", "mountpoint"]
    return argv + [target]


def label(path, m):
    """How a package (its directory's name) or an unsigned stream (its file) is named."""
    return m.get("label") or os.path.basename(path)


FOREIGN = "foreign"  # unsigned_manifest: the file is not addressed to this site's identity


def unsigned_manifest(directory, fname, ids, group):
    """A manifest-like plan for the unsigned stream ``fname`` (``zfs send [-w] -R ROOT@snap |
    age -r ...``) read from its BEGIN records; None when it is another group's stream, FOREIGN
    when it is not addressed to this site's identity (or not an age file: the caller warns).

    Only a complete group goes: a ``-R`` stream whose top dataset is ``group`` and is not an
    encrypted member of someone else's group. A stream of a dataset inside ``group``, or a
    non-``-R`` stream of it, is refused (sending part of a group breaks it, R1)."""
    try:
        h = package.read_unsigned_header(directory, fname, ids)
    except package.PackageError as exc:
        if exc.foreign:
            return FOREIGN
        raise Refusal("%s; nothing was received" % exc) from None
    try:
        return _unsigned_plan(h, fname, group)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        raise Refusal("%s: its stream header is not understood (%s); nothing was received"
                      % (fname, exc)) from None


def _unsigned_plan(h, fname, group):
    top_name = h.dataset
    if top_name != group and not top_name.startswith(group + "/"):
        return None
    fix = "make it with: zfs send -w -R %s@SNAPSHOT | age -r RECIPIENT" % group
    if top_name != group:
        raise Refusal("%s is an unsigned stream of %s, inside group %s: only a whole group can be "
                      "imported unsigned (R1); %s; nothing was received" % (fname, top_name, group, fix))
    top = h.top() if h.compound else None
    if top is None:
        raise Refusal("%s is a stream of %s alone (not zfs send -R): an unsigned stream must carry the "
                      "whole group, its members included (R1); %s; nothing was received" % (fname, group, fix))
    if h.top_encrypted and not top.get("is_encroot"):
        raise Refusal("%s: %s is encrypted but not an encryption root: its group's root must be sent "
                      "(R1); nothing was received" % (fname, group))
    tosnap, fromsnap = h.tosnap, h.fromsnap
    fss = h.filesystems()
    if not isinstance(tosnap, str) or not SNAPSHOT_NAME.match(tosnap) \
            or (fromsnap is not None and (not isinstance(fromsnap, str) or not SNAPSHOT_NAME.match(fromsnap))) \
            or not all(valid_name(fs["name"]) and (fs["name"] == group or fs["name"].startswith(group + "/"))
                       and isinstance(fs.get("snaps"), dict)
                       and all(isinstance(g, int) for g in fs["snaps"].values()) for fs in fss):
        raise Refusal("%s: its header names snapshots or datasets outside group %s; nothing was received"
                      % (fname, group))
    guids = {fs["name"]: str(fs["snaps"][tosnap]) for fs in fss if tosnap in fs["snaps"]}
    if group not in guids:
        raise Refusal("%s: its header has no snapshot %s of %s; nothing was received" % (fname, tosnap, group))
    base_guid = None
    if fromsnap:
        base_guid = top["snaps"].get(fromsnap)
        if base_guid is None:
            raise Refusal("%s: an incremental stream from @%s, a snapshot its header does not list; "
                          "nothing was received" % (fname, fromsnap))
    when = (h.first.creation_time if h.first else 0) or h.begin.creation_time
    try:
        created = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        created = ""
    entry = {"file": fname, "kind": "group" if fromsnap else "full", "datasets": [fs["name"] for fs in fss],
             "send": "zfs send%s -R %s%s@%s (unsigned, read from the stream's header)"
                     % (" -w" if h.top_encrypted else "", "-I @%s " % fromsnap if fromsnap else "", group, tosnap),
             "snapshot": tosnap, "guids": guids, "base": fromsnap,
             "base_guid": None if base_guid is None else str(base_guid)}
    return {"label": fname, "unsigned": True, "group": group, "snapshot": tosnap,
            "created": created, "streams": [entry]}


def plan_import(manifests, dst, group, target, target_parent_exists):
    """(pending [(path, manifest)], skipped names, refusals): what to receive, in order.

    Packages whose snapshots the target has (by guid) are done; the rest must chain, each
    stream starting where the target (as the earlier packages leave it) ends."""
    def target_of(name):
        return target + name[len(group):]

    have = {}  # target dataset -> set of snapshot guids
    newest = {}
    for d in dst.datasets:
        have[d.name] = {str(s["guid"]) for s in dst.snapshots_of(d.name)}
        newest[d.name] = _newest_guid(dst, d.name)
    pending, skipped, refusals = [], [], []
    for path, m in sorted(manifests, key=lambda pm: (pm[1].get("created", ""), label(*pm))):
        entries = m["streams"]
        if all(g in have.get(target_of(n), ()) for e in entries for n, g in e["guids"].items()):
            skipped.append(label(path, m))
            continue
        why = None
        for e in entries:
            t = target_of(e["datasets"][0])
            if e["kind"] == "full":
                if t in newest:
                    why = "%s already exists on the target: a full stream cannot go onto it" % t
                elif t == target and not target_parent_exists:
                    why = "the target's parent %s does not exist" % target.rsplit("/", 1)[0]
            elif newest.get(t) is None:
                why = "%s is not on the target: the package needs it at %s" % (t, e["base"])
            elif newest[t] != e["base_guid"]:
                why = ("%s is not at the package's base %s (guid %s) but at guid %s: a package in "
                       "between is missing, or the target moved on" % (t, e["base"], e["base_guid"], newest[t]))
            elif dst.get(t) is not None and (dst.get(t)["written"] or 0) > 0:
                why = "%s was changed since its last snapshot: receiving would need a rollback" % t
            if why:
                break
            for n, g in e["guids"].items():
                newest[target_of(n)] = g
                have.setdefault(target_of(n), set()).add(g)
        if why:
            refusals.append("%s: %s" % (label(path, m), why))
            break  # every later package of the group builds on this one
        pending.append((path, m))
    return pending, skipped, refusals


def import_(runner, o):
    """Receive every package of ``o.dataset``'s group found in ``o.directory`` into ``o.target``."""
    for what in ("dataset", "target"):
        if not valid_name(getattr(o, what)):
            raise Refusal("%s %r is not a dataset name (pool/dataset)" % (what, getattr(o, what)))
    if "/" not in o.target:
        raise Refusal("target %s is a pool's root dataset; name a dataset below it" % o.target)
    if not o.trusted_signers and not o.allow_unsigned:
        raise Refusal("trusted_signers: at least one Ed25519 public key (PEM) is needed "
                      "(or allow_unsigned for streams made with zfs send -R | age -r)")
    try:
        trusted = [signing.load_public_key(_read(p, "trusted signer"), "trusted signer %s" % p)
                   for p in o.trusted_signers or []]
    except signing.SignatureError as exc:
        raise Refusal(str(exc)) from None
    ids = _identities(o.identity_file)
    _directory(o.directory)

    manifests = []
    for n in package.list_packages(o.directory):
        path = os.path.join(o.directory, n)
        try:
            m = package.read_manifest(path, trusted)
        except package.PackageError as exc:
            raise Refusal("%s; nothing was received" % exc) from None
        if m.get("group") == o.dataset:
            _check_entries(path, m, o.dataset)
            manifests.append((path, m))
    warnings = []
    if o.allow_unsigned:
        for fname in package.list_unsigned(o.directory):
            m = unsigned_manifest(o.directory, fname, ids, o.dataset)
            if m == FOREIGN:
                warnings.append("%s is not addressed to identity_file (or not an age file): left alone" % fname)
            elif m is not None:
                manifests.append((o.directory, m))
        if any(m.get("unsigned") for _p, m in manifests):
            warnings.append("unsigned streams (allow_unsigned): age proves nobody but a holder of the "
                            "recipient's public key wrote them; a signed package (zfs_stream "
                            "state=exported) also proves the sender")
    dst = read_tree(runner, [o.target], recursive=True, with_holds=False, extra=("written",))
    parent = read_tree(runner, [o.target.rsplit("/", 1)[0]], recursive=False, with_holds=False,
                       types="filesystem,volume")
    pending, skipped, refusals = plan_import(manifests, dst, o.dataset, o.target,
                                             o.target.rsplit("/", 1)[0] in parent)
    result = {"dataset": o.dataset, "target": o.target, "skipped": skipped,
              "packages": [{"package": label(p, m), "snapshot": m["snapshot"],
                            "created": m.get("created"), "signed": not m.get("unsigned"),
                            "streams": [{"file": e["file"], "kind": e["kind"], "datasets": e["datasets"],
                                         "command": " ".join(recv_argv(e, o.target + e["datasets"][0][len(o.dataset):]))}
                                        for e in m["streams"]]}
                           for p, m in pending],
              "changed": bool(pending)}
    if not manifests:
        warnings.append("no package of %s in %s" % (o.dataset, o.directory))
    if warnings:
        result["warnings"] = warnings
    if refusals:
        raise Refusal("; ".join(refusals) + "; nothing was received")
    for path, m in pending:  # every byte checked, and every header opened, before the first receive
        try:
            if m.get("unsigned"):
                package.check_unsigned(path, m["streams"][0], ids)
            else:
                package.check_files(path, m)
            for e in m["streams"]:
                package.open_stream(path, e, ids)[0].close()
        except package.PackageError as exc:
            raise Refusal("%s; nothing was received" % exc) from None
    if runner.check_mode or not pending:
        result["hazards"] = tree_hazards(dst)
        return result
    for path, m in pending:
        for e in m["streams"]:
            target = o.target + e["datasets"][0][len(o.dataset):]
            try:
                package.receive_stream(runner, path, e, ids, recv_argv(e, target))
            except package.PackageError as exc:
                raise Refusal("%s: %s" % (label(path, m), exc)) from None
    after = read_tree(runner, [o.target], recursive=True, with_holds=False)
    result["hazards"] = tree_hazards(after)
    return result
