"""Unit tests run on the host: pure parsers and planners, plus the runner with real processes.

Tools that would touch the system are replaced by small scripts on PATH that print output
recorded from the real tools in the lab VM (tests/unit/fixtures, `make fixtures`).
"""

import os
import stat

import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def fixture_text():
    """fixture_text(name) -> the text of tests/unit/fixtures/name."""

    def read(name):
        with open(os.path.join(FIXTURES, name)) as f:
            return f.read()

    return read


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """fake_tools({'losetup': 'text to print'}) puts scripts first on PATH; returns the log path.

    Each script appends its argv to the log, so a test can assert which commands ran.
    """
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    log.touch()

    def install(outputs):
        for tool, text in outputs.items():
            out = bindir / (tool + ".out")
            out.write_text(text)
            script = bindir / tool
            script.write_text('#!/bin/sh\necho "%s $*" >> "%s"\ncat "%s"\n' % (tool, log, out))
            script.chmod(script.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ.get("PATH", "")))
        return log

    return install
