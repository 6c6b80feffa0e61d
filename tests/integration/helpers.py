"""Helpers for the integration tests (imported by tests and conftest)."""

import os
import re
import subprocess


def sh(*argv, check=True, **kw):
    """Run a tool directly (test set-up and independent checks of the kernel's state)."""
    proc = subprocess.run(argv, check=False, text=True, capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%s): %s"
                             % (" ".join(argv), proc.returncode, proc.stderr.strip()))
    return proc


def loops_of(path):
    """Loop devices backing path, straight from losetup (independent of the module)."""
    return sh("losetup", "--noheadings", "--output", "NAME", "--associated", path).stdout.split()


def sysfs(device, attr):
    with open("/sys/block/%s/%s" % (os.path.basename(device), attr)) as f:
        return f.read().strip()


def node_name(request, limit=24):
    """The test's name, shortened and safe as a dataset name component."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name[5:5 + limit])
