# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_pool's backend: import before create, and never create over a ZFS label.

A sneakernet carrier arrives exported. ``state: present`` imports it when ``zpool import``
finds it in ``search_dirs``, and creates a pool only when it is found nowhere. Creating over
devices that hold any signature (blkid) needs ``force``; over a device whose ZFS label
``zpool import -d`` can see, it is refused whatever ``force`` says: a carrier missed by
``search_dirs`` must never be recreated empty.
"""

from __future__ import annotations

import os
import re

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Plan, Refusal

VDEV_TYPES = ("stripe", "mirror", "raidz1", "raidz2", "raidz3")


def parse_importable(text):
    """``zpool import -d ...`` (no pool name) -> {pool: {"id", "state", "action"}}."""
    pools = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^\s*(pool|id|state|action|status):\s*(.*)$", line)
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if key == "pool":
            current = pools.setdefault(value, {})
        elif current is not None:
            current.setdefault(key, value)
    return pools


def parse_status(text):
    """``zpool status NAME`` -> state line, status text and errata lines."""
    out = {"state": None, "status": None, "errata": []}
    key = None
    for line in text.splitlines():
        m = re.match(r"^\s*(state|status|action|errata|see|scan|config|errors):\s?(.*)$", line)
        if m:
            key = m.group(1)
            if key == "state":
                out["state"] = m.group(2).strip()
            elif key == "status":
                out["status"] = m.group(2).strip()
            elif key == "errata":
                out["errata"].append(m.group(2).strip())
        elif key in ("status", "errata") and line.startswith("\t") and line.strip():
            if key == "status":
                out["status"] += " " + line.strip()
            else:
                out["errata"].append(line.strip())
    return out


def imported_pools(runner):
    return set(runner.run(["zpool", "list", "-Hp", "-o", "name"]).stdout.split())


def vdev_args(vdevs):
    args = []
    for i, v in enumerate(vdevs):
        kind = v.get("type") or "stripe"
        devices = v.get("devices") or []
        if kind not in VDEV_TYPES:
            raise Refusal("vdevs[%d]: type must be one of %s" % (i, ", ".join(VDEV_TYPES)))
        if not devices:
            raise Refusal("vdevs[%d]: no devices" % i)
        minimum = {"stripe": 1, "mirror": 2, "raidz1": 2, "raidz2": 3, "raidz3": 4}[kind]
        if len(devices) < minimum:
            raise Refusal("vdevs[%d]: %s needs at least %d devices" % (i, kind, minimum))
        for d in devices:
            if not os.path.isabs(d):
                raise Refusal("vdevs[%d]: device %r must be an absolute path" % (i, d))
        args += ([] if kind == "stripe" else [kind]) + list(devices)
    return args


def _search_args(dirs):
    return [a for d in dirs for a in ("-d", d)]


def converge(runner, p):
    name, state = p["name"], p["state"]
    if not re.match(r"^[A-Za-z][A-Za-z0-9_.:-]*$", name) or "/" in name:
        raise Refusal("%r is not a pool name" % name)
    for d in p["search_dirs"]:
        if not os.path.exists(d):
            raise Refusal("search_dirs: %s does not exist" % d)
    plan = Plan()
    imported = name in imported_pools(runner)
    importable = {}
    if not imported and state in ("present", "imported"):
        res = runner.run(["zpool", "import"] + _search_args(p["search_dirs"]), check=False)
        importable = parse_importable(res.stdout)
    before = {"state": "imported" if imported else ("exported" if name in importable else "absent")}

    if state in ("present", "imported") and not imported:
        if name in importable:
            argv = ["zpool", "import"] + _search_args(p["search_dirs"])
            if p["altroot"]:
                argv += ["-R", p["altroot"]]
            if p["force_import"]:
                argv.append("-f")
            for k, v in sorted(p["properties"].items()):
                if k in ("cachefile", "readonly"):
                    argv += ["-o", "%s=%s" % (k, v)]
            plan.add("import", name, "found in %s (%s)" % (
                ", ".join(p["search_dirs"]) or "the default device directories",
                importable[name].get("state")), argv + [name])
        elif state == "imported":
            raise Refusal("pool %s not found in %s; state imported never creates a pool" % (
                name, ", ".join(p["search_dirs"]) or "the default device directories"))
        else:
            _plan_create(runner, plan, p)
    elif state == "exported" and imported:
        plan.add("export", name, "state exported", ["zpool", "export", name])
    elif state == "absent" and imported:
        argv = ["zpool", "destroy"] + (["-f"] if p["force"] else []) + [name]
        plan.add("destroy", name, "state absent: the pool and all its data", argv)
    elif state == "present" and imported and p["properties"]:
        current = dict(line.split("\t")[1:3] for line in runner.run(
            ["zpool", "get", "-Hp", "-o", "name,property,value",
             ",".join(sorted(p["properties"])), name]).stdout.splitlines() if line)
        changes = {k: str(v) for k, v in p["properties"].items()
                   if str(current.get(k)) != _pool_value(v) and k not in ("ashift",)}
        for k, v in sorted(changes.items()):
            plan.add("set", name, "%s=%s" % (k, v), ["zpool", "set", "%s=%s" % (k, _pool_value(v)), name])

    if plan.steps and not runner.check_mode:
        for step in plan.steps:
            runner.run(step.argv, changes=True)
    after_state = {"present": "imported", "imported": "imported", "exported":
                   "exported" if (imported or before["state"] == "exported") else before["state"],
                   "absent": "absent"}[state]
    result = {"name": name, "changed": plan.changed, "actions": plan.as_list(),
              "diff": {"before": before, "after": {"state": after_state}}}
    if not runner.check_mode and after_state == "imported":
        result.update(parse_status(runner.run(["zpool", "status", name]).stdout))
    return result


def _pool_value(v):
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


def _plan_create(runner, plan, p):
    name = p["name"]
    if not p["vdevs"]:
        raise Refusal("pool %s not found in %s and no vdevs to create it from" % (
            name, ", ".join(p["search_dirs"]) or "the default device directories"))
    args = vdev_args(p["vdevs"])
    devices = [a for a in args if a.startswith("/")]
    missing = [d for d in devices if not os.path.exists(d)]
    if missing:
        raise Refusal("devices do not exist: %s" % ", ".join(missing))
    # A ZFS label on any device: refused whatever force says (an exported carrier is not
    # scratch space). zpool import -d accepts devices and files.
    labelled = parse_importable(runner.run(["zpool", "import"] + _search_args(devices),
                                           check=False).stdout)
    if labelled:
        raise Refusal("refusing to create %s: the devices carry ZFS pool(s) %s (zpool import "
                      "-d sees them). Import the pool (search_dirs) or wipe the devices "
                      "(zpool labelclear) deliberately; force does not override this"
                      % (name, ", ".join(sorted(labelled))))
    signed = []
    for d in devices:
        res = runner.run(["blkid", "-p", "-o", "export", d], check=False)
        if res.rc == 0 and "TYPE=" in res.stdout:
            signed.append("%s (%s)" % (d, re.search(r"^TYPE=(.*)$", res.stdout, re.M).group(1)))
    if signed and not p["force"]:
        raise Refusal("refusing to create %s over devices holding data: %s; set force: true to "
                      "overwrite them" % (name, ", ".join(signed)))
    argv = ["zpool", "create"] + (["-f"] if p["force"] else [])
    if p["altroot"]:
        argv += ["-R", p["altroot"]]
    for k, v in sorted(p["properties"].items()):
        argv += ["-o", "%s=%s" % (k, _pool_value(v))]
    for k, v in sorted(p["filesystem_properties"].items()):
        argv += ["-O", "%s=%s" % (k, _pool_value(v))]
    plan.add("create", name, "not found anywhere", argv + [name] + args)
