"""Helpers for the integration tests (imported by tests and conftest)."""

import os
import subprocess


def sh(*argv, check=True, **kw):
    """Run a tool directly (test set-up and independent checks of the kernel's state)."""
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kw)


def loops_of(path):
    """Loop devices backing path, straight from losetup (independent of the module)."""
    return sh("losetup", "--noheadings", "--output", "NAME", "--associated", path).stdout.split()


def sysfs(device, attr):
    with open("/sys/block/%s/%s" % (os.path.basename(device), attr)) as f:
        return f.read().strip()
