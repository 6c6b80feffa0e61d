#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_key
short_description: Load, unload and change the keys of ZFS encryption roots, recording key generations
version_added: 0.1.0
description:
  - Loads or unloads an encryption root's key (O(state)).
  - Changes its key (C(zfs change-key)) to O(new_key) or O(new_key_file), and records the new key
    generation O(key_id) as the user property C(blindvault:key-id) set locally on the root. A run
    whose O(key_id) is already recorded changes nothing; key material is never compared or stored.
  - "After a change it takes one recursive snapshot of the root, C(<name>@blindvault-key-<key_id>),
    returned as RV(propagation_snapshot). B(Every replica of the root is unsafe until the root's
    whole group has been replicated again), root first, from one snapshot: a raw send of only the
    children, or only the root, leaves replicas that cannot be decrypted while nothing reports an
    error. M(blindvault.storage.zfs_replicate) always sends the whole group."
  - A key loaded only to change it is unloaded again, restoring the previous key status.
  - With O(inherit=true), C(zfs change-key -i) makes the root part of its parent's encryption
    root; refused while replication holds exist unless O(force=true), because every replica then
    has a different encryption-root layout and must be re-seeded.
  - Keys reach C(zfs) on stdin or through a file, never on the command line.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_ONLY
  - blindvault.storage.attributes.PLATFORM
options:
  name:
    description: The encryption root.
    type: str
    required: true
  state:
    description:
      - V(loaded) or V(unloaded) afterwards. Unloading unmounts the root's group first.
      - Omitted, the key status is left as it was.
    type: str
    choices: [loaded, unloaded]
  key:
    description: The current key (passphrase or hex), when it has to be loaded.
    type: str
  key_file:
    description: A file with the current key, when it has to be loaded.
    type: path
  new_keyformat:
    description: Key format after the change; defaults to the current one.
    type: str
    choices: [passphrase, hex, raw]
  new_key:
    description: The new key (passphrase or 64 hex characters).
    type: str
  new_key_file:
    description: A file with the new key; becomes the C(keylocation) unless O(new_keylocation) says otherwise.
    type: path
  new_keylocation:
    description: C(keylocation) after the change (C(prompt) or C(file:///path)).
    type: str
  pbkdf2iters:
    description: PBKDF2 iterations for a new passphrase (at least 100000).
    type: int
  key_id:
    description: The new key generation's label, required with any new key (for example V(2026-11)
      or a ticket number). Recorded as C(blindvault:key-id).
    type: str
  inherit:
    description: Join the parent's encryption root (C(change-key -i)).
    type: bool
    default: false
  force:
    description: With O(inherit), proceed although replication holds exist.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Rotate a root's key; replicas become unsafe until the group is replicated again
  blindvault.storage.zfs_key:
    name: tank/vault
    key_file: /etc/blindvault/keys/vault-2026-10.hex
    new_key_file: /etc/blindvault/keys/vault-2026-11.hex
    key_id: "2026-11"
  register: rotated

- name: Then send the whole group, root first
  blindvault.storage.zfs_replicate:
    source: tank/vault
    target: carrier/vault
  when: rotated is changed

- name: Unlock for use
  blindvault.storage.zfs_key:
    name: tank/vault
    state: loaded
"""

RETURN = r"""
keystatus:
  description: The key status afterwards (V(available) or V(unavailable)).
  returned: always
  type: str
key_id:
  description: The key generation recorded on the root afterwards (null if none).
  returned: always
  type: str
propagation_snapshot:
  description: The recursive snapshot taken after a key change, to replicate the whole group from.
  returned: when the key was (or would be) changed
  type: str
  sample: tank/vault@blindvault-key-2026-11
replicas_unsafe:
  description: The plain statement that replicas are unsafe until the group is replicated again.
  returned: when the key was (or would be) changed
  type: str
actions:
  description: The plan, in order.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    make_runner,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.keys import converge


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["loaded", "unloaded"]),
            key=dict(type="str", no_log=True),
            key_file=dict(type="path", no_log=False),
            new_keyformat=dict(type="str", choices=["passphrase", "hex", "raw"]),
            new_key=dict(type="str", no_log=True),
            new_key_file=dict(type="path", no_log=False),
            new_keylocation=dict(type="str", no_log=False),
            pbkdf2iters=dict(type="int"),
            key_id=dict(type="str", no_log=False),
            inherit=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("key", "key_file"), ("new_key", "new_key_file")],
        supports_check_mode=True,
    )
    with backend_errors(module):
        result = converge(make_runner(module), module.params)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
