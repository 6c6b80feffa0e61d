#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: systemd_units
short_description: Write systemd units and the files they run, verify them, enable them where systemd runs
version_added: 0.1.0
description:
  - Converges a set of files (units, the scripts they start, their configuration) and their
    directories in one call, checks the units with C(systemd-analyze verify), and enables or
    starts units only where systemd is PID 1 (by default).
  - The roles of this collection install their check scripts, services and timers with it, in one
    module run instead of a C(file), C(template), C(command) and C(systemd_service) task each.
  - Files are compared byte for byte and by mode and replaced atomically (a temporary file in
    the same directory, fsync, rename); a second run changes nothing.
  - Changed units are written to a private temporary directory first and verified there with
    the files they run already in place; only units that verify replace the installed ones.
  - Files are owned by the user the module runs as (root with C(become)). Existing symlinks and
    directories at a file's path are refused, never replaced.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  files:
    description:
      - The files to converge, in order. A file whose name ends in a unit suffix (V(.service),
        V(.timer), V(.socket), V(.path), V(.mount), V(.automount), V(.swap), V(.target),
        V(.slice)) is a unit; every other file is written before the units are verified.
      - Two units with the same file name are refused (they would be the same unit).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path. Its directory must exist or be listed in O(directories).
        type: path
        required: true
      content:
        description:
          - The file's text, for example from C(lookup('ansible.builtin.template', ...)).
          - Exactly one of O(files[].content) and O(files[].secret_content).
        type: str
      secret_content:
        description:
          - The text of a file that holds secrets (key paths, passphrases), never logged, and
            shown in C(--diff) only as its length.
        type: str
      mode:
        description:
          - Octal permissions, best quoted (V("0755")). An unquoted C(0755) reaches the module as
            the number YAML made of it and is taken as those permission bits.
        type: raw
        default: "0644"
  directories:
    description: Directories to create (with missing parents) and keep at their mode, before any file.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      mode:
        description: Octal permissions, as for O(files[].mode).
        type: raw
        default: "0755"
  verify:
    description:
      - Check every unit among O(files) with C(systemd-analyze verify --man=no) (the tool must be
        installed). Failing units are not installed and the module fails with the tool's words.
      - In check mode the units are verified only when nothing would change (the installed files
        are then the ones checked); RV(verified) is null otherwise.
    type: bool
    default: true
  enable:
    description: Unit names (with suffix, for example V(md-check.timer)) to enable.
    type: list
    elements: str
    default: []
  start:
    description: Unit names to start when they are not active.
    type: list
    elements: str
    default: []
  systemd:
    description:
      - When to run C(systemctl) (C(daemon-reload) after a unit changed, C(enable), C(start)).
      - V(auto) only where systemd is PID 1 (C(/run/systemd/system) exists); chroots, image
        builds and containers without systemd get verified files and nothing enabled.
      - V(always) even so (fails where there is no systemd to talk to); V(never) never.
    type: str
    choices: [auto, always, never]
    default: auto
notes:
  - A unit that changed is not restarted; timers pick up their new schedule at the
    C(daemon-reload).
seealso:
  - module: ansible.builtin.systemd_service
  - module: ansible.builtin.template
"""

EXAMPLES = r"""
- name: A check script, its service and its timer, in one task
  blindvault.storage.systemd_units:
    directories:
      - path: /usr/local/libexec/blindvault
    files:
      - path: /usr/local/libexec/blindvault/md-check
        content: "{{ lookup('ansible.builtin.file', 'md-check') }}"
        mode: "0755"
      - path: /etc/systemd/system/md-check-data.service
        content: "{{ lookup('ansible.builtin.template', 'md-check.service.j2') }}"
      - path: /etc/systemd/system/md-check-data.timer
        content: "{{ lookup('ansible.builtin.template', 'md-check.timer.j2') }}"
    enable: [md-check-data.timer]
    start: [md-check-data.timer]
  register: units

- name: A configuration that holds a key path (never logged)
  blindvault.storage.systemd_units:
    directories:
      - {path: /etc/blindvault/verify, mode: "0700"}
    files:
      - path: /etc/blindvault/verify/vars.yml
        secret_content: "{{ verify_vars | to_nice_yaml }}"
        mode: "0600"
    verify: false
"""

RETURN = r"""
files:
  description: One result per file, in order.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
    mode:
      description: Its mode.
      type: str
    unit:
      description: Whether it is a unit (and so verified).
      type: bool
    changed:
      description: Whether it was (or in check mode would be) written or chmod-ed.
      type: bool
    created:
      description: Whether it did not exist.
      type: bool
  sample: [{"path": "/etc/systemd/system/md-check-data.timer", "mode": "0644", "unit": true,
            "changed": true, "created": true}]
directories:
  description: One result per directory, in order (C(path), C(mode), C(changed), C(created)).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/usr/local/libexec/blindvault", "mode": "0755", "changed": false, "created": false}]
verified:
  description: True when the units were checked with C(systemd-analyze verify) and passed;
    null when not checked (O(verify=false), no units, or check mode with changes).
  returned: always
  type: bool
  sample: true
systemd_pid1:
  description: Whether systemd is PID 1 on the host (C(/run/systemd/system) exists).
  returned: always
  type: bool
  sample: false
systemctl:
  description: Whether C(systemctl) was used (O(systemd) and RV(systemd_pid1)).
  returned: always
  type: bool
  sample: false
enabled:
  description: Units enabled by this run (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [md-check-data.timer]
started:
  description: Units started by this run (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [md-check-data.timer]
actions:
  description: The plan, in order; in check mode what would be done.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "create", "object": "/etc/systemd/system/md-check-data.timer",
            "reason": "212 bytes, mode 0644"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.module import backend_errors, make_runner
from ansible_collections.blindvault.storage.plugins.module_utils.systemd import (
    SYSTEMD_MODES,
    DirSpec,
    FileSpec,
    converge,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", required=True, options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str"),
                secret_content=dict(type="str", no_log=True),
                mode=dict(type="raw", default="0644"),
            ), required_one_of=[("content", "secret_content")],
                mutually_exclusive=[("content", "secret_content")]),
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                mode=dict(type="raw", default="0755"),
            )),
            verify=dict(type="bool", default=True),
            enable=dict(type="list", elements="str", default=[]),
            start=dict(type="list", elements="str", default=[]),
            systemd=dict(type="str", choices=list(SYSTEMD_MODES), default="auto"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    files = [FileSpec(path=f["path"], mode=f["mode"], secret=f["secret_content"] is not None,
                      content=f["content"] if f["secret_content"] is None else f["secret_content"])
             for f in p["files"]]
    directories = [DirSpec(path=d["path"], mode=d["mode"]) for d in p["directories"]]
    with backend_errors(module):
        result = converge(make_runner(module), files, directories, verify=p["verify"],
                          enable=p["enable"], start=p["start"], systemd=p["systemd"])
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
