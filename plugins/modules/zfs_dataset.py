#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_dataset
short_description: Declare ZFS filesystems and volumes, encrypted or not, one or hundreds per call
version_added: 0.1.0
description:
  - Creates, updates and destroys ZFS filesystems and volumes, including new encryption roots.
  - Reads the state of every pool involved with one C(zfs list) however many datasets are
    declared; then runs one C(zfs create) per new dataset and one C(zfs set) per distinct set
    of property changes (C(zfs set a=1 b=2 ds1 ds2 ...)).
  - Key material goes to C(zfs create) on stdin (O(key)) or by file (O(key_file)), never on the
    command line. Keys are never compared or stored; change keys with M(blindvault.storage.zfs_key).
  - Properties fixed at creation (encryption, keyformat, casesensitivity, normalization,
    utf8only, volblocksize) that differ on an existing dataset are reported as an error; nothing
    is ever silently recreated.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  name:
    description:
      - Dataset name (C(pool/path)). Required unless O(datasets) is given; mutually exclusive
        with it.
    type: str
  state:
    description:
      - V(present) exists with the declared properties; V(absent) destroyed.
    type: str
    choices: [present, absent]
    default: present
  type:
    description: Filesystem or volume (zvol).
    type: str
    choices: [filesystem, volume]
    default: filesystem
  volsize:
    description:
      - Size of a volume (ZFS size syntax, V(1G)). Growing is applied; shrinking needs O(force).
    type: str
  properties:
    description:
      - Properties to set, as ZFS names them (V(compression), V(quota), V(atime), user properties
        C(module:name)). Booleans become V(on)/V(off); sizes are compared in bytes.
      - A property counts as in place when its effective value matches, inherited or not.
    type: dict
    default: {}
  encryption:
    description:
      - Encryption suite for a new encryption root, one of V(on), V(off), V(aes-128-ccm),
        V(aes-192-ccm), V(aes-256-ccm), V(aes-128-gcm), V(aes-192-gcm), V(aes-256-gcm) (YAML's
        unquoted C(on)/C(off) booleans are understood). V(on) takes ZFS's default
        (V(aes-256-gcm) on 2.1) and a second run stays unchanged. Omit for a dataset that
        inherits its parent's encryption. Needs O(keyformat) and, unless O(keylocation) points
        at the key, O(key) or O(key_file).
    type: str
  keyformat:
    description: Key format of a new encryption root.
    type: str
    choices: [passphrase, hex, raw]
  keylocation:
    description:
      - Where ZFS finds the key later (C(prompt) or C(file:///path)); defaults to C(file://)
        O(key_file) when that is given, else C(prompt). Updated on an existing encryption root.
    type: str
  key:
    description:
      - The key (a passphrase or 64 hex characters) for a new encryption root, passed on stdin.
    type: str
  key_file:
    description: A file holding the key for a new encryption root.
    type: path
  pbkdf2iters:
    description: PBKDF2 iterations for a new passphrase-wrapped root (at least 100000).
    type: int
  recursive:
    description: With O(state=absent), also destroy descendants and snapshots.
    type: bool
    default: false
  force:
    description:
      - With O(state=absent), release this collection's replication holds (C(blindvault:*)) on
        snapshots first. They mark the last common base of a replica, so destroying them forces
        a full re-seed.
      - Allows shrinking O(volsize).
    type: bool
    default: false
  datasets:
    description:
      - Converge many datasets in one call with one state read; parents are created before
        children whatever the order.
      - Each item takes the top-level options; those given at the top level are the defaults
        for every item.
      - Every item is validated and planned before anything changes.
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
      type:
        description: See O(type).
        type: str
        choices: [filesystem, volume]
      volsize:
        description: See O(volsize).
        type: str
      properties:
        description: See O(properties).
        type: dict
      encryption:
        description: See O(encryption).
        type: str
      keyformat:
        description: See O(keyformat).
        type: str
        choices: [passphrase, hex, raw]
      keylocation:
        description: See O(keylocation).
        type: str
      key:
        description: See O(key).
        type: str
      key_file:
        description: See O(key_file).
        type: path
      pbkdf2iters:
        description: See O(pbkdf2iters).
        type: int
      recursive:
        description: See O(recursive).
        type: bool
      force:
        description: See O(force).
        type: bool
notes:
  - The pools must be imported (M(blindvault.storage.zfs_pool)).
"""

EXAMPLES = r"""
- name: An encryption root with a hex key from a 0600 file, and two children
  blindvault.storage.zfs_dataset:
    datasets:
      - name: tank/vault
        encryption: aes-256-gcm
        keyformat: hex
        key_file: /etc/blindvault/keys/tank-vault.hex
        properties: {compression: lz4, "blindvault:key-id": k1}
      - name: tank/vault/photos
      - name: tank/vault/mail
        properties: {quota: 50G}

- name: Hundreds of datasets in one task (one state read, one zfs set per distinct change)
  blindvault.storage.zfs_dataset:
    properties: {compression: zstd, atime: false}
    datasets: "{{ project_datasets }}"  # [{name: tank/vault/p001}, {name: tank/vault/p002}, ...]

- name: A 10 GiB volume
  blindvault.storage.zfs_dataset:
    name: tank/shim
    type: volume
    volsize: 10G
"""

RETURN = r"""
datasets:
  description: One result per declared dataset, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Dataset name., type: str, returned: always}
    changed: {description: Whether this dataset changed (or would in check mode)., type: bool, returned: always}
    created: {description: Whether it was (or would be) created., type: bool, returned: always}
    destroyed: {description: Whether it was (or would be) destroyed., type: bool, returned: always}
    set: {description: Properties set (or to be set)., type: dict, returned: always}
    encryption: {description: "The suite ZFS uses (V(on) resolved); null when unencrypted.", type: str, returned: always}
    encryptionroot: {description: "Its encryption root; null when unencrypted.", type: str, returned: always}
    actions: {description: The plan for this dataset., type: list, elements: dict, returned: always}
actions:
  description: The whole plan, in order.
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    exit_list_form,
    list_form_module,
    make_runner,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.dataset import (
    KEYFORMATS,
    DatasetSpec,
    converge,
)

ITEM_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    type=dict(type="str", choices=["filesystem", "volume"], default="filesystem"),
    volsize=dict(type="str"),
    properties=dict(type="dict", default={}),
    encryption=dict(type="str"),
    keyformat=dict(type="str", choices=list(KEYFORMATS)),
    keylocation=dict(type="str", no_log=False),
    key=dict(type="str", no_log=True),
    key_file=dict(type="path", no_log=False),
    pbkdf2iters=dict(type="int"),
    recursive=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
)


def main():
    module, items = list_form_module(ITEM_SPEC, "datasets", "name")
    with backend_errors(module):
        results = converge(make_runner(module), [DatasetSpec(**item) for item in items])
    exit_list_form(module, results, "datasets", "name")


if __name__ == "__main__":
    main()
