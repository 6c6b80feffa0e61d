#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_bookmark
short_description: Bookmark ZFS snapshots so incremental bases outlive them
version_added: 0.1.0
description:
  - Creates a bookmark of a snapshot (C(zfs bookmark)) or destroys one.
  - A bookmark keeps a snapshot's place in history after the snapshot is destroyed, so
    per-dataset incremental sends can still start from it. An existing bookmark of the same
    name that marks another snapshot (another guid) is reported, never replaced.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  snapshot:
    description: The snapshot to bookmark (C(pool/ds@snap)). Required with O(state=present).
    type: str
  bookmark:
    description: The bookmark (C(pool/ds#mark)); a bare C(mark) is placed on O(snapshot)'s dataset.
    type: str
    required: true
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Keep the base of the last transfer
  blindvault.storage.zfs_bookmark:
    snapshot: tank/vault@move-7
    bookmark: move-7
"""

RETURN = r"""
bookmark:
  description: The full bookmark name.
  returned: always
  type: str
  sample: tank/vault#move-7
guid:
  description: The guid it marks (the snapshot's), or null.
  returned: always
  type: int
actions:
  description: The plan.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    make_runner,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.snapshot import (
    converge_bookmark,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            snapshot=dict(type="str"),
            bookmark=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    with backend_errors(module):
        result = converge_bookmark(make_runner(module), p["snapshot"], p["bookmark"], p["state"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
