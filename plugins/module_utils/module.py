# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every module shell shares: a runner bound to check mode, list-form items
validated against the module's own argument spec, and backend errors turned into
clear ``fail_json`` messages (never a traceback)."""

from __future__ import annotations

from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.blindvault.storage.plugins.module_utils.plan import PartialApply, Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import (
    CommandError,
    Runner,
    RunnerError,
)


def make_runner(module):
    return Runner(check_mode=module.check_mode)


def item_options(item_spec):
    """The list option's ``options``: the item spec without defaults, so that unset item
    options stay None and take the top-level value; declaring them lets Ansible know which
    nested values are secrets (no_log) before it logs anything."""
    return {k: {kk: vv for kk, vv in v.items() if kk not in ("default", "required")}
            for k, v in item_spec.items()}


def list_items(module, list_key, item_spec):
    """Items of a list-form option, each validated against ``item_spec``.

    Top-level options act as defaults for every item, so a play can say
    ``direct_io: off`` once for fifty devices. Without the list, the top-level
    options are the single item.
    """
    params = module.params
    defaults = {k: params[k] for k in item_spec if params.get(k) is not None}
    raw = params.get(list_key)
    if raw is None:
        raw = [{}]
    items = []
    for index, item in enumerate(raw):
        merged = dict(defaults)
        merged.update({k: v for k, v in item.items() if v is not None})
        for k, v in merged.items():
            if item_spec.get(k, {}).get("no_log") and v is not None:
                for secret in (v if isinstance(v, list) else [v]):
                    module.no_log_values.add(str(secret))
        result = ArgumentSpecValidator(item_spec).validate(merged)
        if result.error_messages:
            where = "%s[%d]: " % (list_key, index) if params.get(list_key) is not None else ""
            module.fail_json(msg=where + "; ".join(result.error_messages))
        items.append(result.validated_parameters)
    return items


def list_form_module(item_spec, list_key, key):
    """An AnsibleModule for one object (``key`` and the item options at the top level) or many
    (``list_key``: items with the same options, top-level values as their defaults).

    Returns (module, items), every item validated before anything is touched.
    """
    argument_spec = dict(item_spec)
    argument_spec[key] = {k: v for k, v in item_spec[key].items() if k != "required"}
    # The list itself is no secret (its items' secret options are no_log on their own); saying
    # so keeps the no-log heuristic quiet for list names like ``keys``.
    argument_spec[list_key] = dict(type="list", elements="dict", options=item_options(item_spec),
                                   no_log=False)
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_one_of=[(key, list_key)],
        mutually_exclusive=[(key, list_key)],
        supports_check_mode=True,
    )
    return module, list_items(module, list_key, item_spec)


def exit_list_form(module, results, list_key, key, flat_single=False):
    """Exit with per-object results: their warnings raised, their diffs headed by ``key``,
    their plans joined. ``flat_single``: without the list, the one result's keys are the
    module's own (as a single-object module returns them)."""
    for res in results:
        for warning in res.pop("warnings", []):
            module.warn(warning)
    diffs = [dict(res.pop("diff"), before_header=res[key], after_header=res[key])
             for res in results]
    single = module.params[list_key] is None
    if single and flat_single:
        module.exit_json(diff=diffs[0], **results[0])
    module.exit_json(changed=any(r["changed"] for r in results), diff=diffs[0] if single else diffs,
                     actions=[a for r in results for a in r["actions"]], **{list_key: results})


@contextmanager
def backend_errors(module):
    """Turn the backends' typed errors into fail_json with the tool's own words."""
    try:
        yield
    except PartialApply as exc:
        extra = {}
        if isinstance(exc.error, CommandError):
            extra = dict(cmd=" ".join(exc.error.argv), rc=exc.error.rc, stderr=exc.error.stderr)
        module.fail_json(msg=str(exc), converged=exc.done, **extra)
    except Refusal as exc:
        module.fail_json(msg=str(exc))
    except CommandError as exc:
        module.fail_json(msg=str(exc), cmd=" ".join(exc.argv), rc=exc.rc,
                         stdout=exc.stdout, stderr=exc.stderr)
    except RunnerError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:  # a file or sysfs attribute that cannot be read or written
        where = " ".join(str(f) for f in (exc.filename, exc.filename2) if f)
        module.fail_json(msg="%s%s" % (where + ": " if where else "", exc.strerror or exc))
