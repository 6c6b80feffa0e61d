#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_snapshot
short_description: Take, hold and destroy ZFS snapshots, atomically across datasets
version_added: 0.1.0
description:
  - Takes snapshots that do not exist yet. All snapshots declared in one call with the same
    O(recursive) and O(properties) are taken by one C(zfs snapshot) process, in one ZFS
    transaction, so they are atomic across datasets (and across a whole tree with O(recursive=true)).
  - Places hold tags that are missing (C(zfs hold)).
  - Destroys snapshots with O(state=absent); bookmarks each one first by default (an incremental
    base survives as C(dataset#snapshot)), and refuses snapshots held by replication
    (C(blindvault:*) tags) unless O(force=true).
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_ONLY
  - blindvault.storage.attributes.PLATFORM
options:
  name:
    description: Snapshot name C(pool/dataset@snapshot). Required unless O(snapshots) is given.
    type: str
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  recursive:
    description: The same snapshot of every descendant too (C(-r), atomic).
    type: bool
    default: false
  holds:
    description: Hold tags the snapshot (and with O(recursive), every descendant's) must carry.
    type: list
    elements: str
    default: []
  properties:
    description: User properties set on new snapshots (C(zfs snapshot -o)).
    type: dict
    default: {}
  bookmark:
    description: With O(state=absent), bookmark each snapshot before destroying it.
    type: bool
    default: true
  force:
    description: With O(state=absent), release C(blindvault:*) replication holds and destroy.
    type: bool
    default: false
  snapshots:
    description:
      - Many snapshots in one call (one state read; new ones taken together). Each item takes the
        options above; top-level options are the defaults.
    type: list
    elements: dict
    suboptions:
      name:
        description: See O(name). Required in every item.
        type: str
      state:
        description: See O(state).
        type: str
        choices: [present, absent]
      recursive:
        description: See O(recursive).
        type: bool
      holds:
        description: See O(holds).
        type: list
        elements: str
      properties:
        description: See O(properties).
        type: dict
      bookmark:
        description: See O(bookmark).
        type: bool
      force:
        description: See O(force).
        type: bool
"""

EXAMPLES = r"""
- name: One atomic recursive snapshot of an encryption root's whole group, held
  blindvault.storage.zfs_snapshot:
    name: "tank/vault@nightly-{{ '%Y%m%d' | strftime }}"
    recursive: true
    holds: [keep]

- name: Snapshots of two trees in the same transaction
  blindvault.storage.zfs_snapshot:
    recursive: true
    snapshots:
      - name: tank/vault@move-1
      - name: tank/home@move-1
"""

RETURN = r"""
snapshots:
  description: Per declared snapshot, C(name), C(changed) and C(snapshots) (every snapshot it
    covers, descendants included).
  returned: always
  type: list
  elements: dict
actions:
  description: The plan, in order (creation first, destruction last).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    list_form_module,
    make_runner,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.snapshot import (
    converge_snapshots,
)

ITEM_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    recursive=dict(type="bool", default=False),
    holds=dict(type="list", elements="str", default=[]),
    properties=dict(type="dict", default={}),
    bookmark=dict(type="bool", default=True),
    force=dict(type="bool", default=False),
)


def main():
    module, items = list_form_module(ITEM_SPEC, "snapshots", "name")
    with backend_errors(module):
        result = converge_snapshots(make_runner(module), items)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
