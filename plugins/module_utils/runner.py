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
* check mode: a command marked ``changes=True`` is recorded, not run;
* pipelines (``pipeline()``): ``zfs send | zfs recv`` joined by an OS pipe, so the stream
  never passes through Python unless a ``sink`` (a hashing reader) asks for it.
"""

from __future__ import annotations

import os
import shutil
import signal
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


@dataclass(frozen=True)
class PipeResult:
    """What a pipeline did: per-stage argv, rc and stderr; ``out_bytes`` read from its end."""

    argvs: list
    rcs: list
    stderrs: list = field(repr=False)
    ran: bool = True
    seconds: float = 0.0
    out_bytes: int = 0

    def cause(self):
        """Index of the stage whose failure explains the pipeline's, or None if all passed.

        A writer killed by SIGPIPE (or saying "Broken pipe") failed because its reader did.
        """
        failed = [i for i, rc in enumerate(self.rcs) if rc != 0]
        real = [i for i in failed if self.rcs[i] not in (-signal.SIGPIPE, 128 + signal.SIGPIPE)
                and "broken pipe" not in self.stderrs[i].lower()]
        return (real or failed or [None])[0]


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

    def pipeline(self, argvs, changes=False, sink=None, stderr_file=None, timeout=None, source=None):
        """Run ``argvs[0] | argvs[1] | ...`` joined by OS pipes; return a ``PipeResult``.

        ``sink``: a callable fed the last command's stdout in chunks (e.g. a hash), else it
        is discarded. ``source``: an iterable of bytes written to the first command's stdin
        (e.g. decrypted stream chunks; it may raise to abort: the pipe is closed early, the
        commands are reaped and the exception propagates); not together with ``sink``.
        ``stderr_file``: a path receiving the first command's stderr as it is
        written (``zfs send -v`` progress). On failure a ``CommandError`` names the stage
        that caused it (a sender killed by a closed pipe is a consequence, not the cause).
        """
        argvs = [[str(a) for a in argv] for argv in argvs]
        if not argvs or any(not argv for argv in argvs):
            raise TypeError("pipeline needs non-empty argv lists, got %r" % (argvs,))
        if source is not None and sink is not None:
            raise TypeError("pipeline takes a source or a sink, not both (the pipe could deadlock)")
        shown = " | ".join(" ".join(a) for a in argvs)
        if changes and self.check_mode:
            self.history.append({"argv": argvs, "rc": None, "ran": False, "seconds": 0.0})
            return PipeResult(argvs, [0] * len(argvs), [""] * len(argvs), ran=False)
        env = dict(os.environ)
        env.update(C_LOCALE)
        env["PATH"] = self.path
        exes = [self.which(argv[0]) for argv in argvs]
        errs = [tempfile.TemporaryFile() for _argv in argvs]
        progress = open(stderr_file, "wb") if stderr_file else None
        procs = []
        count = 0
        start = time.monotonic()
        try:
            prev = subprocess.DEVNULL if source is None else subprocess.PIPE
            for i, (exe, argv) in enumerate(zip(exes, argvs)):
                err = progress if (i == 0 and progress) else errs[i]
                last = i == len(argvs) - 1
                out = subprocess.DEVNULL if (last and source is not None) else subprocess.PIPE
                proc = subprocess.Popen(  # noqa: S603 - argv lists, no shell
                    [exe] + argv[1:], stdin=prev, stdout=out, stderr=err, env=env)
                if i:
                    prev.close()  # the reader owns it now: a dead reader must SIGPIPE the writer
                prev = proc.stdout
                procs.append(proc)
            fed_all = True
            if source is not None:
                try:
                    count, fed_all = self._feed(procs[0].stdin, source)
                except BaseException:
                    for proc in procs:  # an incomplete stream: let them see EOF and give up
                        try:
                            proc.wait(timeout=60)
                        except subprocess.TimeoutExpired:
                            pass
                    raise
                prev = None
            while prev is not None:
                chunk = prev.read(1 << 20)
                if not chunk:
                    break
                count += len(chunk)
                if sink is not None:
                    sink(chunk)
            if prev is not None:
                prev.close()
            deadline = None if not (timeout or self.timeout) else start + (timeout or self.timeout)
            rcs = []
            for proc in procs:
                left = None if deadline is None else max(0.1, deadline - time.monotonic())
                rcs.append(proc.wait(timeout=left))
        except subprocess.TimeoutExpired:
            for proc in procs:
                proc.kill()
            raise CommandError(argvs[-1], None, "", "%s timed out" % shown) from None
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if progress:
                progress.close()
        stderrs = []
        for f in errs:
            f.seek(0)
            stderrs.append(f.read().decode("utf-8", "replace"))
            f.close()
        if progress:
            with open(stderr_file, "rb") as f:
                stderrs[0] = f.read()[-4096:].decode("utf-8", "replace")
        seconds = round(time.monotonic() - start, 3)
        self.history.append({"argv": argvs, "rc": rcs, "ran": True, "seconds": seconds})
        result = PipeResult(argvs, rcs, stderrs, ran=True, seconds=seconds, out_bytes=count)
        failed = result.cause()
        if failed is not None:
            raise CommandError(argvs[failed], rcs[failed], "", "%s (in: %s)" % (
                stderrs[failed].strip() or "no output", shown))
        if not fed_all:
            raise CommandError(argvs[0], rcs[0], "", "%s stopped reading before the end of its input: "
                               "the rest was not delivered (in: %s)" % (argvs[0][0], shown))
        return result

    @staticmethod
    def _feed(stdin, source):
        """Write ``source``'s chunks to ``stdin``; returns (bytes written, whether all of the
        source was). A reader that leaves early stops the feeding (its exit status, or the
        caller, says why); the pipe is always closed, so an aborting source ends the reader
        with an incomplete stream."""
        count = 0
        try:
            for chunk in source:
                stdin.write(chunk)
                count += len(chunk)
        except BrokenPipeError:
            if hasattr(source, "close"):
                source.close()
            return count, False
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass
        return count, True

    @contextmanager
    def secret_file(self, secret):
        """Yield the path of a 0600 file holding ``secret`` in a private 0700 directory (on
        /dev/shm when it is there).

        For tools that only take key material from a file. The file is removed on exit.
        """
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        # in memory where there is a tmpfs for it: a deleted file on /tmp's disk leaves the
        # key in free blocks
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        tmpdir = tempfile.mkdtemp(prefix="blindvault-", dir=shm)  # created 0700
        path = os.path.join(tmpdir, "key")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secret)
            yield path
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
