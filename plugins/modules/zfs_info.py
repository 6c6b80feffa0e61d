#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_info
short_description: Read a ZFS tree's datasets, snapshots, holds, encryption roots and key-less hazards
version_added: 0.1.0
description:
  - Reads a pool or dataset tree with one C(zfs list -Hp -t all) (plus one C(zfs holds) when
    any snapshot is held), however many datasets it has. Needs no key loaded.
  - Reports C(hazards) that ZFS shows without keys, the state the encryption-root incident left
    behind (a key change followed by raw sends of only the children, or only the root). See
    RV(hazards) for what is and is not visible.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.PLATFORM
attributes:
  check_mode:
    support: full
    details: Changes nothing in any mode.
  diff_mode:
    support: none
options:
  name:
    description: A pool or dataset name.
    type: str
    required: true
  recursive:
    description: Include all descendants, their snapshots and bookmarks.
    type: bool
    default: true
  properties:
    description:
      - More properties to read, besides the encryption, key, guid and replication properties
        always read. User properties (C(module:property)) are allowed.
    type: list
    elements: str
    default: []
  compare_with:
    description:
      - A source dataset that O(name) replicates (same paths below both). Adds C(structure)
        hazards where a dataset is an encryption root on one side only, and C(key-id) hazards
        where a replica's encryption root records another key generation than its source.
    type: str
  query:
    description:
      - A JMESPath expression applied to the result; its value is returned as RV(query_result).
        Needs the C(jmespath) Python package on the managed host.
    type: str
notes:
  - "Key-less detection sees a member whose C(keyformat), C(pbkdf2salt) or C(pbkdf2iters) differ
    from its encryption root's (a passphrase change, or a keyformat change), and on replicas
    written by this collection a member whose C(blindvault:key-id) differs from its root's."
  - "It cannot see hex to hex or raw to raw key changes, or C(change-key -i), carried to a replica
    by bare child-only raw sends made by other tools: both sides then read the same properties.
    Only loading the key and reading proves a replica (C(zfs_verify))."
"""

EXAMPLES = r"""
- name: Check a carrier's replicas without any key
  blindvault.storage.zfs_info:
    name: carrier/siteA
  register: carrier

- name: Stop if any replica is undecryptable as it stands
  ansible.builtin.assert:
    that: carrier.hazards | length == 0
    fail_msg: "{{ carrier.hazards | map(attribute='detail') | list }}"

- name: Compare a replica's encryption layout with its source
  blindvault.storage.zfs_info:
    name: backup/tank
    compare_with: tank
    query: "encryption_roots[?keystatus=='unavailable'].name"
  register: replica
"""

RETURN = r"""
exists:
  description: Whether O(name) exists.
  returned: always
  type: bool
datasets:
  description: Filesystems and volumes with their properties, in C(zfs list) order.
    Unset or inapplicable values are null.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "tank/er", "type": "filesystem", "encryption": "aes-256-gcm",
            "encryptionroot": "tank/er", "keyformat": "hex", "keystatus": "unavailable",
            "pbkdf2iters": 0, "pbkdf2salt": 0, "blindvault:key-id": "k2", "guid": 1234}]
snapshots:
  description: Snapshots with C(guid), C(createtxg), C(dataset) and C(holds) (tags).
  returned: always
  type: list
  elements: dict
bookmarks:
  description: Bookmarks with C(guid), C(createtxg) and C(dataset).
  returned: always
  type: list
  elements: dict
holds:
  description: Snapshot name to its hold tags, for held snapshots.
  returned: always
  type: dict
encryption_roots:
  description: Encryption roots with C(keyformat), C(keystatus), C(key_id) and C(members)
    (the datasets whose C(encryptionroot) it is, root first).
  returned: always
  type: list
  elements: dict
hazards:
  description:
    - Problems visible without keys, each C({dataset, encryptionroot, reason, detail}).
    - C(reason) is C(keyformat), C(pbkdf2), C(key-id) or C(structure).
  returned: always
  type: list
  elements: dict
  sample: [{"dataset": "carrier/er/child", "encryptionroot": "carrier/er", "reason": "keyformat",
            "detail": "keyformat hex differs from its encryption root's passphrase: the root's key cannot unlock it"}]
query_result:
  description: The value of O(query) over this result.
  returned: when O(query) is given
  type: raw
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    make_runner,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.info import info

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            recursive=dict(type="bool", default=True),
            properties=dict(type="list", elements="str", default=[]),
            compare_with=dict(type="str"),
            query=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["query"] and not HAS_JMESPATH:
        module.fail_json(msg=missing_required_lib("jmespath"))
    with backend_errors(module):
        result = info(make_runner(module), p["name"], p["recursive"], p["properties"],
                      p["compare_with"])
    if p["query"]:
        try:
            result["query_result"] = jmespath.search(p["query"], result)
        except jmespath.exceptions.JMESPathError as exc:
            module.fail_json(msg="query %r: %s" % (p["query"], exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
