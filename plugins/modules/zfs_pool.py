#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_pool
short_description: Import, create, export and destroy ZFS pools without ever recreating a carrier empty
version_added: 0.1.0
description:
  - V(present) makes sure the pool is imported. An exported pool found by C(zpool import) in
    O(search_dirs) is imported; a pool is created from O(vdevs) only when it is found nowhere.
  - Creating over devices that hold any signature (C(blkid -p)) is refused unless O(force=true).
    Creating over a device whose ZFS label C(zpool import -d) can see is refused B(whatever
    O(force) says), because a carrier pool that O(search_dirs) missed must never be recreated
    empty.
  - Reports the pool's C(zpool status) state line, status text and errata, where ZFS's
    encryption errata show.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  name:
    description: Pool name.
    type: str
    required: true
  state:
    description:
      - V(present) imported, importing or (if found nowhere) creating it.
      - V(imported) imported, never created.
      - V(exported) exported (C(zpool export)), as a carrier leaves.
      - V(absent) destroyed with all its data (C(zpool destroy)).
    type: str
    choices: [present, absent, imported, exported]
    default: present
  vdevs:
    description: The layout for creation.
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description: Vdev type.
        type: str
        choices: [stripe, mirror, raidz1, raidz2, raidz3]
        default: stripe
      devices:
        description: Absolute paths of devices or files.
        type: list
        elements: str
        required: true
  properties:
    description: Pool properties (C(-o) on create; C(zpool set) on an imported pool).
    type: dict
    default: {}
  filesystem_properties:
    description: Root filesystem properties on create (C(-O)), e.g. encryption defaults.
    type: dict
    default: {}
  search_dirs:
    description: Directories or devices where C(zpool import -d) looks for the pool.
    type: list
    elements: path
    default: []
  altroot:
    description: Alternate root for import and create (C(-R)).
    type: path
  force:
    description: Create over devices holding other (non-ZFS) signatures; destroy with C(-f).
    type: bool
    default: false
  force_import:
    description: Import a pool last used by another system (C(zpool import -f)).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Attach the carrier that arrived from site A
  blindvault.storage.zfs_pool:
    name: carrier
    state: imported
    search_dirs: [/dev/disk/by-id]
    altroot: /mnt/carrier

- name: A mirror for site B, created only if it exists nowhere
  blindvault.storage.zfs_pool:
    name: siteb
    vdevs:
      - type: mirror
        devices: [/dev/disk/by-id/ata-DISK1, /dev/disk/by-id/ata-DISK2]
    properties: {ashift: 12}
    filesystem_properties: {compression: lz4, atime: "off"}

- name: The carrier leaves
  blindvault.storage.zfs_pool:
    name: carrier
    state: exported
"""

RETURN = r"""
state:
  description: The pool's state line from C(zpool status) (V(ONLINE), V(DEGRADED)...).
  returned: when the pool is imported afterwards (not in check mode)
  type: str
status:
  description: The status text of C(zpool status), if any.
  returned: when the pool is imported afterwards (not in check mode)
  type: str
errata:
  description: Errata ZFS reports for the pool (for example the encryption errata).
  returned: when the pool is imported afterwards (not in check mode)
  type: list
  elements: str
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
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.pool import converge


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent", "imported", "exported"],
                       default="present"),
            vdevs=dict(type="list", elements="dict", default=[], options=dict(
                type=dict(type="str", default="stripe",
                          choices=["stripe", "mirror", "raidz1", "raidz2", "raidz3"]),
                devices=dict(type="list", elements="str", required=True),
            )),
            properties=dict(type="dict", default={}),
            filesystem_properties=dict(type="dict", default={}),
            search_dirs=dict(type="list", elements="path", default=[]),
            altroot=dict(type="path"),
            force=dict(type="bool", default=False),
            force_import=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    with backend_errors(module):
        result = converge(make_runner(module), module.params)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
