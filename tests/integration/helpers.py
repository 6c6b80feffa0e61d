"""Helpers for the integration tests (imported by tests and conftest)."""

import contextlib
import importlib
import io
import json
import os
import subprocess

from ansible.module_utils.testing import patch_module_args


def sh(*argv, check=True, **kw):
    """Run a tool directly (test set-up and independent checks of the kernel's state)."""
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kw)


class ModuleResult(dict):
    @property
    def failed(self):
        return bool(self.get("failed"))


def run_module(name, args, check=False, diff=False):
    """Run blindvault.storage.<name>'s main() with args; return its JSON result."""
    mod = importlib.import_module("ansible_collections.blindvault.storage.plugins.modules." + name)
    params = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(params), contextlib.redirect_stdout(out):
        try:
            mod.main()
        except SystemExit:
            pass
    text = out.getvalue()
    try:
        return ModuleResult(json.loads(text[text.index("{"):]))
    except ValueError:
        raise AssertionError("module %s printed no JSON: %r" % (name, text)) from None


def loops_of(path):
    """Loop devices backing path, straight from losetup (independent of the module)."""
    return sh("losetup", "--noheadings", "--output", "NAME", "--associated", path).stdout.split()


def sysfs(device, attr):
    with open("/sys/block/%s/%s" % (os.path.basename(device), attr)) as f:
        return f.read().strip()
