"""Run a module's main() in-process, as Ansible would, and return its JSON result.

Shared by the unit tests (host) and the integration tests (lab VM): the real module layer
(argument spec, check mode, exit_json/fail_json) without ~9 s of Ansible task overhead.
"""

import contextlib
import importlib
import io
import json

from ansible.module_utils.common import warnings as _warnings
from ansible.module_utils.testing import patch_module_args


class ModuleResult(dict):
    @property
    def failed(self):
        return bool(self.get("failed"))


def run_module(name, args, check=False, diff=False):
    """Run blindvault.storage.<name>'s main() with args; return its JSON result."""
    mod = importlib.import_module("ansible_collections.blindvault.storage.plugins.modules." + name)
    params = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    # A real module runs in its own process: warnings of earlier runs must not leak in.
    _warnings._global_warnings.clear()
    _warnings._global_deprecations.clear()
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
