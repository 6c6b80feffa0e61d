# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""systemd units and the files they run: written, verified and enabled in one call.

The roles install a check script, a service and its timer (integrity_raid, backup_verify,
crypt_shim). Done as ``file`` + ``template`` + ``command`` + ``systemd_service`` tasks that is
six or more module processes per role; here it is one, and safer:

* files are compared byte for byte and by mode, and replaced atomically (temporary file in the
  same directory, fsync, rename), so a second run changes nothing;
* new unit files are staged in a private directory and checked there with
  ``systemd-analyze verify`` before any installed unit is replaced: a unit that does not verify
  never reaches the unit directory;
* ``systemctl`` runs only where systemd is PID 1 (``auto``): chroots, containers and the lab VM
  get verified files and nothing enabled.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, replace

from ansible_collections.blindvault.storage.plugins.module_utils.files import write_atomic
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Plan, Refusal, refuse_duplicates
from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError, ToolNotFound

UNIT_SUFFIXES = (".service", ".timer", ".socket", ".path", ".mount", ".automount", ".swap",
                 ".target", ".slice")
SYSTEMD_MODES = ("auto", "always", "never")
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"  # exists exactly when systemd is PID 1 (sd_booted)


def parse_mode(mode, where):
    """'0644' / '644' -> 0o644; an int is taken as the mode bits themselves (YAML reads an
    unquoted 0644 as the integer 420 == 0o644); anything else is a Refusal naming ``where``."""
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    else:
        try:
            value = int(str(mode), 8)
        except ValueError:
            value = -1
    if not 0 <= value <= 0o7777:
        raise Refusal("%s: mode %r is not an octal permission like '0644'" % (where, mode))
    return value


@dataclass(frozen=True)
class DirSpec:
    path: str
    mode: str = "0755"


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: str
    mode: str = "0644"
    secret: bool = False

    @property
    def is_unit(self):
        return os.path.basename(self.path).endswith(UNIT_SUFFIXES)


def _check_input(files, directories, enable, start):
    if not files:
        raise Refusal("files: at least one file is needed")
    for spec in list(directories) + list(files):
        if not os.path.isabs(spec.path):
            raise Refusal("%s: not an absolute path" % spec.path)
        parse_mode(spec.mode, spec.path)
    refuse_duplicates([f.path for f in files] + [d.path for d in directories], "path")
    refuse_duplicates([os.path.basename(f.path) for f in files if f.is_unit], "unit name")
    declared = {d.path for d in directories}
    for f in files:
        parent = os.path.dirname(f.path)
        if parent not in declared and not os.path.isdir(parent):
            raise Refusal("%s: its directory %s does not exist; declare it in directories"
                          % (f.path, parent))
    for name in list(enable) + list(start):
        if not name or "/" in name or not name.endswith(UNIT_SUFFIXES):
            raise Refusal("%r: not a unit name like 'md-check.timer' (a name with its suffix, "
                          "not a path)" % name)


def _dir_state(spec):
    try:
        st = os.stat(spec.path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        raise Refusal("%s: exists and is not a directory" % spec.path)
    return stat.S_IMODE(st.st_mode)


def _file_state(spec):
    """(content bytes, mode) of the installed file, or (None, None)."""
    try:
        st = os.lstat(spec.path)
    except FileNotFoundError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        raise Refusal("%s: exists and is not a regular file (a symlink or a directory is never "
                      "replaced)" % spec.path)
    with open(spec.path, "rb") as fh:
        return fh.read(), stat.S_IMODE(st.st_mode)


def _shown(spec, content):
    if content is None:
        return ""
    if spec.secret:
        return "(secret content, %d bytes, not shown)\n" % len(content)
    return content.decode("utf-8", "replace")


def plan_files(files, directories):
    """Read the installed state once and decide. Returns (plan, dir_results, file_results,
    diffs, before): ``before`` maps each file to change to its installed (content, mode)."""
    plan = Plan()
    dir_results, file_results, diffs, before = [], [], [], {}
    for d in directories:
        want = parse_mode(d.mode, d.path)
        have = _dir_state(d)
        if have is None:
            plan.add("mkdir", d.path, "mode %04o" % want)
        elif have != want:
            plan.add("chmod", d.path, "%04o -> %04o" % (have, want))
        dir_results.append({"path": d.path, "mode": "%04o" % want,
                            "changed": have != want, "created": have is None})
    for f in files:
        want_mode = parse_mode(f.mode, f.path)
        want = f.content.encode("utf-8")
        have, have_mode = _file_state(f)
        content_changed = have != want
        mode_changed = not content_changed and have_mode != want_mode
        if have is None:
            plan.add("create", f.path, "%d bytes, mode %04o" % (len(want), want_mode))
        elif content_changed:
            plan.add("replace", f.path, "content differs (%d -> %d bytes)" % (len(have), len(want)))
        elif mode_changed:
            plan.add("chmod", f.path, "%04o -> %04o" % (have_mode, want_mode))
        changed = content_changed or mode_changed
        file_results.append({"path": f.path, "mode": "%04o" % want_mode, "unit": f.is_unit,
                             "changed": changed, "created": have is None})
        if changed:
            before[f.path] = (have, have_mode)
            diffs.append({"before_header": f.path, "after_header": f.path,
                          "before": _shown(f, have) if not mode_changed else "mode %04o\n" % have_mode,
                          "after": _shown(f, want) if not mode_changed else "mode %04o\n" % want_mode})
    return plan, dir_results, file_results, diffs, before


NO_ANALYZE = "systemd-analyze is not installed: install systemd, or set verify: false"


def _verify(runner, paths):
    try:
        runner.run(["systemd-analyze", "verify", "--man=no"] + list(paths))
    except ToolNotFound:
        raise Refusal(NO_ANALYZE) from None
    except CommandError as exc:
        raise Refusal("systemd-analyze verify found problems in %s: %s"
                      % (", ".join(os.path.basename(p) for p in paths),
                         (exc.stderr or exc.stdout or "").strip() or "rc=%s" % exc.rc)) from None


def _apply_files(runner, files, directories, before, verify):
    """Directories, then the files units run, then the units (verified first, staged).

    A unit that does not verify fails the call with nothing of it installed, and what was
    written before the check (the directories, the scripts the units would run) is put back
    as it was."""
    if verify and any(f.is_unit for f in files):
        try:
            runner.which("systemd-analyze")  # before anything is written
        except ToolNotFound:
            raise Refusal(NO_ANALYZE) from None
    dirs_before = []  # (path, mode before or None if this call creates it), parents first
    for d in directories:
        mode = parse_mode(d.mode, d.path)
        missing, p = [], d.path
        while p and p != "/" and not os.path.lexists(p):
            missing.append(p)
            p = os.path.dirname(p)
        dirs_before += [(m, None) for m in reversed(missing)] or [(d.path, _dir_state(d))]
        os.makedirs(d.path, mode=mode, exist_ok=True)
        os.chmod(d.path, mode)
    units = [f for f in files if f.is_unit]
    saved = []
    for f in files:
        if f.path in before and not f.is_unit:
            saved.append((f.path, before[f.path]))
            write_atomic(f.path, f.content.encode("utf-8"), parse_mode(f.mode, f.path))
    if verify and units:
        try:
            if any(u.path in before for u in units):
                _verify_staged(runner, units)
            else:
                _verify(runner, [u.path for u in units])
        except Refusal as exc:
            for path, (content, mode) in reversed(saved):
                if content is None:
                    os.unlink(path)
                else:
                    write_atomic(path, content, mode)
            undone = [path for path, _state in saved] + _undo_directories(dirs_before)
            if undone:
                raise Refusal("%s (put back as they were: %s)" % (exc, ", ".join(undone))) from None
            raise
    for u in units:
        if u.path in before:
            write_atomic(u.path, u.content.encode("utf-8"), parse_mode(u.mode, u.path))


def _undo_directories(dirs_before):
    """Remove the directories this call created (if still empty) and restore changed modes;
    returns the paths put back."""
    undone = []
    for path, mode in reversed(dirs_before):
        try:
            if mode is None:
                os.rmdir(path)
            elif stat.S_IMODE(os.stat(path).st_mode) != mode:
                os.chmod(path, mode)
            else:
                continue
            undone.append(path)
        except OSError:
            pass  # not empty (someone else's files): left as it is
    return undone


def _verify_staged(runner, units):
    """Verify the units as they would be, from a private directory (the installed ones stay)."""
    stage = tempfile.mkdtemp(prefix="bv-units-")
    try:
        paths = [os.path.join(stage, os.path.basename(u.path)) for u in units]
        for u, path in zip(units, paths):
            write_atomic(path, u.content.encode("utf-8"), 0o644)
        _verify(runner, paths)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _unit_state(runner, verb, name):
    """``systemctl is-enabled|is-active NAME`` -> its one word ('enabled', 'active', ...)."""
    res = runner.run(["systemctl", verb, name], check=False)
    return (res.stdout.strip().splitlines() or ["unknown"])[0]


def _systemctl(runner, plan, units_changed, enable, start):
    enabled, started = [], []
    if units_changed:
        plan.add("daemon-reload", "systemd", "unit files changed", argv=["systemctl", "daemon-reload"])
        runner.run(["systemctl", "daemon-reload"], changes=True)
    for name in enable:
        state = _unit_state(runner, "is-enabled", name)
        if state not in ("enabled", "static", "alias", "indirect", "generated"):
            argv = ["systemctl", "enable", name]
            plan.add("enable", name, "was %s" % state, argv=argv)
            runner.run(argv, changes=True)
            enabled.append(name)
    for name in start:
        state = _unit_state(runner, "is-active", name)
        if state != "active":
            argv = ["systemctl", "start", name]
            plan.add("start", name, "was %s" % state, argv=argv)
            runner.run(argv, changes=True)
            started.append(name)
    return enabled, started


def converge(runner, files, directories=(), verify=True, enable=(), start=(), systemd="auto",
             runtime_dir=SYSTEMD_RUNTIME_DIR):
    """Write ``files`` (creating ``directories``), verify the units, enable/start ``enable`` /
    ``start`` where systemd runs. Returns the module's result dict (with ``diff``)."""
    if systemd not in SYSTEMD_MODES:
        raise Refusal("systemd must be one of %s, got %r" % (", ".join(SYSTEMD_MODES), systemd))
    files = [replace(f, path=os.path.normpath(f.path)) for f in files]
    directories = [replace(d, path=os.path.normpath(d.path)) for d in directories]
    _check_input(files, directories, enable, start)
    plan, dir_results, file_results, diffs, before = plan_files(files, directories)
    units_changed = any(r["changed"] for r in file_results if r["unit"])
    verified = None
    if not runner.check_mode:
        _apply_files(runner, files, directories, before, verify)
        verified = bool(verify and any(f.is_unit for f in files)) or None
    elif verify and any(f.is_unit for f in files) and not plan.changed:
        _verify(runner, [f.path for f in files if f.is_unit])  # nothing would change: check what is there
        verified = True
    pid1 = os.path.isdir(runtime_dir)
    use_systemctl = systemd == "always" or (systemd == "auto" and pid1)
    enabled, started = [], []
    if use_systemctl:
        enabled, started = _systemctl(runner, plan, units_changed, enable, start)
    return {
        "changed": plan.changed,
        "directories": dir_results,
        "files": file_results,
        "verified": verified,
        "systemd_pid1": pid1,
        "systemctl": use_systemctl,
        "enabled": enabled,
        "started": started,
        "actions": plan.as_list(),
        "diff": diffs,
        "warnings": list(plan.warnings),
    }
