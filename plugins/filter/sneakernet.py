# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller-side helpers of the sneakernet role: pure functions over registered results.

They run on the controller (no module execution, no cost in the VM) and keep the role's
tasks free of long Jinja: normalising the declared trees, refusing partial encryption groups
before anything is touched (safety rule R1), the key-generation suffix of the trip snapshot,
the keys per tree for verification, and the summary table.
"""

from __future__ import annotations

import hashlib

RULE_R1 = "safety rule R1: an encryption group travels whole, root first"


def sneakernet_items(datasets):
    """The declared trees with their defaults filled in."""
    out = []
    for d in datasets or []:
        out.append({
            "source": d["source"],
            "target": d.get("target"),  # a files carrier's departure names no target
            "recursive": d.get("recursive", True) if d.get("recursive") is not None else True,
            "include": list(d.get("include") or []),
            "exclude": list(d.get("exclude") or []),
        })
    return out


def sneakernet_snapshots(items, name):
    """zfs_snapshot's ``snapshots`` list: ``source@name`` of every tree, recursive as declared.
    One call takes them all in one ZFS transaction (atomic across the trees)."""
    return [{"name": "%s@%s" % (i["source"], name), "recursive": i["recursive"]} for i in items]


def _by_name(info):
    return {d["name"]: d for d in info.get("datasets") or []}


def sneakernet_refusals(items, infos):
    """Why a declared tree would send part of an encryption group (R1), one message each.

    ``infos``: the zfs_info result of each item's source tree (same order). A source that is a
    member of a group whose root lies above it, or an encryption root with members declared
    with ``recursive: false``, is refused here, before the carrier is written to or a snapshot
    is taken. (zfs_replicate refuses or widens such sources itself; the role refuses them
    outright so that a trip never depends on how a target path happens to be spelled.)
    """
    problems = []
    for item, info in zip(items, infos):
        src = item["source"]
        if not info.get("exists"):
            problems.append("%s does not exist" % src)
            continue
        ds = _by_name(info).get(src)
        if ds is None:
            problems.append("%s is not a filesystem or volume" % src)
            continue
        root = ds.get("encryptionroot")
        if ds.get("encryption") not in (None, "off") and root and root != src:
            problems.append(
                "%s is a member of encryption root %s's group: sent without %s it becomes "
                "undecryptable on the carrier after a key change (%s); declare source: %s "
                "(recursive) with its replica as target" % (src, root, root, RULE_R1, root))
            continue
        if not item["recursive"]:
            members = [d["name"] for d in info.get("datasets") or []
                       if d["name"] != src and d.get("encryptionroot") == src]
            if members:
                problems.append(
                    "%s is an encryption root with members (%s): recursive: false would send it "
                    "without them (%s); set recursive: true" % (
                        src, ", ".join(sorted(members)[:5]), RULE_R1))
    return problems


def sneakernet_key_suffix(infos):
    """``-k`` and 8 hex digits of the key generations recorded on the trees' encryption roots,
    or "" when none is recorded. A key change (zfs_key records a new key-id) changes the trip
    snapshot's name, so the trip takes a new snapshot and sends the whole group again even on
    the day a same-named trip already went (R1)."""
    pairs = sorted({"%s=%s" % (r["name"], r.get("key_id")) for info in infos
                    for r in info.get("encryption_roots") or [] if r.get("key_id")})
    if not pairs:
        return ""
    return "-k" + hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:8]


def sneakernet_verify_plan(items, infos, keys, on_target=False):
    """Per item: the zfs_verify ``keys`` list (named as on the target) and the encryption roots
    this site holds no key for. A tree is verified only when every root has a key.

    ``infos``: the zfs_info results of the items' sources (roots are read there), or of their
    targets with ``on_target`` (a files carrier's arrival: the source is not a dataset here).
    A key may name its root as on the source or as on the target."""
    given = {}
    for k in keys or []:
        given[k["encryptionroot"]] = k
    plan = []
    for item, info in zip(items, infos):
        src, tgt = item["source"], item["target"]
        if on_target:
            src = tgt
        entry = {"keys": [], "missing": [], "roots": []}
        for r in info.get("encryption_roots") or []:
            name = r["name"]
            if name != src and not name.startswith(src + "/"):
                continue
            if not item["recursive"] and name != src:
                continue
            troot = tgt + name[len(src):]
            entry["roots"].append(troot)
            k = given.get(troot) or given.get(name) or given.get(item["source"] + name[len(src):])
            if k is None:
                entry["missing"].append(name)
                continue
            key = {"encryptionroot": troot}
            if k.get("key_file"):
                key["key_file"] = k["key_file"]
            if k.get("key") is not None:
                key["key"] = k["key"]
            entry["keys"].append(key)
        entry["verify"] = bool(entry["roots"]) and not entry["missing"]
        plan.append(entry)
    return plan


def _human(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n = n / 1024.0
    return str(n)


def sneakernet_summary(items, replicated, verified, verify_plan, check_mode=False):
    """Rows {dataset, source, action, bytes, bytes_text, verified} from the registered results
    of zfs_replicate and zfs_verify (loops over ``items``) and the verify plan.

    A stream carrying several datasets (a group's ``-R`` stream) counts its bytes on its first
    dataset; the others show ``(stream)``. ``verified`` per target dataset: ``ok``, ``FAILED``,
    ``skipped`` (nothing to read), ``no key`` (this site holds no key for a root of the tree) or
    ``planned`` (check mode)."""
    rows = []
    for i, item in enumerate(items):
        rep = replicated[i] if i < len(replicated) else {}
        ver = verified[i] if i < len(verified) else {}
        vp = verify_plan[i] if i < len(verify_plan) else {}
        by_source = {}
        for st in rep.get("streams") or []:
            names = st.get("datasets") or []
            for j, n in enumerate(names):
                if n not in by_source:
                    by_source[n] = st.get("bytes_estimated") if j == 0 else "(stream)"
        status = {d["name"]: d.get("status") for d in ver.get("datasets") or []}
        for m in rep.get("datasets") or []:
            tgt = m.get("target")
            if not vp.get("verify"):
                v = "no key"
            elif check_mode:
                v = "planned"
            elif tgt not in status:
                v = "skipped"
            else:
                v = {"ok": "ok", "failed": "FAILED"}.get(status[tgt], status[tgt])
            b = by_source.get(m.get("source"))
            rows.append({
                "dataset": tgt,
                "source": m.get("source"),
                "action": m.get("action"),
                "bytes": b if isinstance(b, int) else None,
                "bytes_text": b if isinstance(b, str) else _human(b),
                "verified": v,
            })
    return rows


def sneakernet_files_summary(items, streamed, verified, verify_plan, depart, check_mode=False):
    """Rows like :func:`sneakernet_summary`'s for a files carrier, from the registered results of
    zfs_stream (exported at departure, imported at arrival) and zfs_verify: one row per tree."""
    rows = []
    for i, item in enumerate(items):
        res = streamed[i] if i < len(streamed) else {}
        ver = verified[i] if i < len(verified) else {}
        vp = verify_plan[i] if i < len(verify_plan) else {}
        if depart:
            total = sum(st.get("bytes") or 0 for st in res.get("streams") or []) or None
            action = ("package %s" % res["package"].rsplit("/", 1)[-1]) if res.get("package") else "up to date"
            rows.append({"dataset": res.get("dataset") or item["source"], "source": item["source"],
                         "action": action, "bytes": total, "bytes_text": _human(total),
                         "verified": "at arrival"})
            continue
        packages = [p.get("package") for p in res.get("packages") or []]
        if not vp.get("verify"):
            v = "no key"
        elif check_mode:
            v = "planned"
        elif ver.get("ok") is None:
            v = "skipped"
        else:
            v = "ok" if ver.get("ok") else "FAILED"
        rows.append({"dataset": item["target"], "source": item["source"],
                     "action": ("imported %s" % ", ".join(packages)) if packages else "up to date",
                     "bytes": None, "bytes_text": "-", "verified": v})
    return rows


def sneakernet_table(rows, title=""):
    """The rows as aligned text lines (debug output)."""
    head = ("dataset", "action", "bytes", "verified")
    body = [(r["dataset"], r["action"] or "", r["bytes_text"], r["verified"]) for r in rows]
    widths = [max([len(head[c])] + [len(str(b[c])) for b in body]) for c in range(4)]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    lines = ([title] if title else []) + [fmt % head, fmt % tuple("-" * w for w in widths)]
    lines += [fmt % b for b in body]
    return [line.rstrip() for line in lines]


class FilterModule(object):
    def filters(self):
        return {
            "sneakernet_items": sneakernet_items,
            "sneakernet_refusals": sneakernet_refusals,
            "sneakernet_snapshots": sneakernet_snapshots,
            "sneakernet_key_suffix": sneakernet_key_suffix,
            "sneakernet_verify_plan": sneakernet_verify_plan,
            "sneakernet_summary": sneakernet_summary,
            "sneakernet_files_summary": sneakernet_files_summary,
            "sneakernet_table": sneakernet_table,
        }
