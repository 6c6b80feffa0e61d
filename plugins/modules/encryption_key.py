#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: encryption_key
short_description: Generate key material for ZFS and LUKS, with optional age escrow
version_added: 0.1.0
description:
  - Generates a key file from the operating system's secure random source and writes it with
    mode 0600 atomically (temporary file, fsync, rename). The file holds exactly the key, no
    trailing newline, as ZFS C(keylocation=file://) and cryptsetup C(--key-file) read it.
  - An existing key file is never overwritten unless O(force=true); one that does not look like
    the declared O(format) is reported and kept.
  - With O(escrow_recipients), also writes an age-encrypted copy (age X25519, the
    age-encryption.org/v1 format) beside it, so that recovery is a plain C(age -d -i IDENTITY)
    by whoever holds an identity. The escrow is rewritten when the recipients change.
  - The key itself is never returned or logged.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  path:
    description:
      - Where the key file goes. Its directory must exist. Required unless O(keys) is given;
        mutually exclusive with it.
    type: path
  format:
    description:
      - V(hex) 2 x O(length) hexadecimal characters (ZFS C(keyformat=hex) with the default length).
      - V(raw) O(length) random bytes (ZFS C(keyformat=raw), LUKS key files).
      - V(passphrase) URL-safe random text from O(length) random bytes (ZFS
        C(keyformat=passphrase), LUKS passphrases).
    type: str
    choices: [hex, raw, passphrase]
    default: hex
  length:
    description: Random bytes of key material. ZFS hex and raw keys need 32.
    type: int
    default: 32
  escrow_recipients:
    description: age X25519 public keys (C(age1...)) that can decrypt the escrow copy.
    type: list
    elements: str
    default: []
  escrow_path:
    description: Where the escrow copy goes; defaults to O(path) with C(.age) appended. The
      recipients are recorded beside it in C(<escrow_path>.recipients).
    type: path
  force:
    description:
      - Replace an existing key file with a new key. Whatever the old key encrypts is lost unless
        it was escrowed or re-keyed first.
    type: bool
    default: false
  keys:
    description:
      - Converge many key files in one call, for example one per encryption root.
      - Each item takes the top-level options; those given at the top level are the defaults
        for every item (O(escrow_path) is per item).
      - Every item is validated and planned before any file is written.
    type: list
    elements: dict
    suboptions:
      path:
        description: See O(path). Required in every item.
        type: path
      format:
        description: See O(format).
        type: str
        choices: [hex, raw, passphrase]
      length:
        description: See O(length).
        type: int
      escrow_recipients:
        description: See O(escrow_recipients).
        type: list
        elements: str
      escrow_path:
        description: See O(escrow_path).
        type: path
      force:
        description: See O(force).
        type: bool
requirements:
  - cryptography (Python package) for O(escrow_recipients)
"""

EXAMPLES = r"""
- name: A hex key for a ZFS encryption root, escrowed to two administrators
  blindvault.storage.encryption_key:
    path: /etc/blindvault/keys/tank-vault.hex
    escrow_recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
      - age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg
  register: vault_key

- name: One key per encryption root in one task, all escrowed to the same administrator
  blindvault.storage.encryption_key:
    escrow_recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
    keys:
      - path: /etc/blindvault/keys/tank-vault.hex
      - path: /etc/blindvault/keys/tank-mail.pass
        format: passphrase
  register: root_keys

- name: Recover it somewhere else
  ansible.builtin.command: age -d -i admin.identity -o tank-vault.hex tank-vault.hex.age
"""

RETURN = r"""
path:
  description: The key file.
  returned: when O(path) is given
  type: str
format:
  description: The key format.
  returned: when O(path) is given
  type: str
generated:
  description: Whether a new key was (or would be) generated.
  returned: when O(path) is given
  type: bool
escrow_path:
  description: The age-encrypted copy, or null without recipients.
  returned: when O(path) is given
  type: str
escrow_recipients:
  description: The recipients of the escrow copy, sorted.
  returned: when O(path) is given
  type: list
  elements: str
keys:
  description: With O(keys), one result per item, in order, each with RV(path), RV(format),
    RV(generated), RV(escrow_path), RV(escrow_recipients), RV(actions) and C(changed).
  returned: when O(keys) is given
  type: list
  elements: dict
actions:
  description: What was (or would be) done.
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.blindvault.storage.plugins.module_utils.keys.material import (
    FORMATS,
    converge_many,
)
from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    exit_list_form,
    list_form_module,
)


ITEM_SPEC = dict(
    path=dict(type="path", required=True),
    format=dict(type="str", choices=list(FORMATS), default="hex"),
    length=dict(type="int", default=32),
    escrow_recipients=dict(type="list", elements="str", default=[]),
    escrow_path=dict(type="path"),
    force=dict(type="bool", default=False),
)


def main():
    module, items = list_form_module(ITEM_SPEC, "keys", "path")
    if module.params["keys"] is not None and module.params["escrow_path"] is not None:
        module.fail_json(msg="escrow_path is per key: give it in the keys items")
    for index, item in enumerate(items):
        if not 16 <= item["length"] <= 4096:
            where = "keys[%d]: " % index if module.params["keys"] is not None else ""
            module.fail_json(msg=where + "length must be between 16 and 4096 bytes")
    with backend_errors(module):
        results = converge_many(items, module.check_mode)
    exit_list_form(module, results, "keys", "path", flat_single=True)


if __name__ == "__main__":
    main()
