# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one place in the collection that starts processes.

Every backend (ZFS, LUKS, dm-integrity, md, loop) runs its tools through a
``Runner``:

* argv lists only, never a shell;
* the C locale, so parsers see the tools' untranslated output;
* secrets go on stdin (``secret=``) or through a 0600 file in a 0700 directory
  (``secret_file()``), never in argv, never in the history or an error;
* failures raise ``CommandError`` carrying argv, rc and the tool's stderr;
* check mode: a command marked ``changes=True`` is recorded, not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field


class RunnerError(Exception):
    """Base class for everything the runner raises."""


class ToolNotFound(RunnerError):
    def __init__(self, tool):
        self.tool = tool
        super().__init__(
            "required tool %r was not found in PATH (%s)" % (tool, os.environ.get("PATH", ""))
        )


class CommandError(RunnerError):
    """A command exited non-zero. ``str()`` names the command and the tool's own words."""

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        said = (stderr or "").strip() or (stdout or "").strip() or "no output"
        super().__init__("%s failed (rc=%s): %s" % (" ".join(self.argv), rc, said))


@dataclass(frozen=True)
class Result:
    """What a command did. ``ran`` is False for a changing command skipped in check mode."""

    argv: list
    rc: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)
    ran: bool = True
    seconds: float = 0.0


C_LOCALE = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


class Runner:
    """Runs commands for a backend.

    ``history`` lists every command started (and, in check mode, every changing
    command that was skipped) as dicts with ``argv``, ``rc``, ``ran`` and
    ``seconds``: modules may return it, benchmarks count it.
    """

    def __init__(self, check_mode=False, path=None, timeout=None):
        self.check_mode = bool(check_mode)
        self.timeout = timeout
        self.history = []
        extra = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        parts = (path or os.environ.get("PATH", "")).split(os.pathsep)
        self.path = os.pathsep.join([p for p in parts if p] + [p for p in extra if p not in parts])
        self._which = {}

    def which(self, tool):
        if tool not in self._which:
            found = shutil.which(tool, path=self.path)
            if found is None:
                raise ToolNotFound(tool)
            self._which[tool] = found
        return self._which[tool]

    def run(self, argv, changes=False, secret=None, data=None, check=True, timeout=None):
        """Run ``argv`` (a list of strings) and return a ``Result``.

        ``changes``: the command modifies the system; in check mode it is only recorded.
        ``secret``: bytes/str written to stdin and never logged. ``data``: plain stdin.
        ``check``: raise ``CommandError`` on a non-zero exit status.
        """
        if isinstance(argv, (str, bytes)) or not argv:
            raise TypeError("argv must be a non-empty list of strings, got %r" % (argv,))
        argv = [str(a) if isinstance(a, int) and not isinstance(a, bool) else a for a in argv]
        for a in argv:
            if not isinstance(a, str):
                raise TypeError("argv items must be strings, got %r in %r" % (a, argv))
        if secret is not None and data is not None:
            raise ValueError("pass either secret or data on stdin, not both")
        if changes and self.check_mode:
            self.history.append({"argv": argv, "rc": None, "ran": False, "seconds": 0.0})
            return Result(argv, 0, "", "", ran=False)
        stdin = secret if secret is not None else data
        if isinstance(stdin, str):
            stdin = stdin.encode("utf-8")
        env = dict(os.environ)
        env.update(C_LOCALE)
        env["PATH"] = self.path
        exe = self.which(argv[0])
        start = time.monotonic()
        try:
            proc = subprocess.run(  # noqa: S603 - argv list, no shell
                [exe] + argv[1:],
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                timeout=timeout or self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandError(argv, None, "", "timed out after %s s" % exc.timeout) from None
        seconds = round(time.monotonic() - start, 3)
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        self.history.append({"argv": argv, "rc": proc.returncode, "ran": True, "seconds": seconds})
        if check and proc.returncode != 0:
            raise CommandError(argv, proc.returncode, out, err)
        return Result(argv, proc.returncode, out, err, ran=True, seconds=seconds)

    @contextmanager
    def secret_file(self, secret):
        """Yield the path of a 0600 file holding ``secret`` in a private 0700 directory.

        For tools that only take key material from a file. The file is removed on exit.
        """
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        tmpdir = tempfile.mkdtemp(prefix="blindvault-")  # created 0700
        path = os.path.join(tmpdir, "key")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secret)
            yield path
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
