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
    description: Where the key file goes. Its directory must exist.
    type: path
    required: true
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

- name: Recover it somewhere else
  ansible.builtin.command: age -d -i admin.identity -o tank-vault.hex tank-vault.hex.age
"""

RETURN = r"""
path:
  description: The key file.
  returned: always
  type: str
format:
  description: The key format.
  returned: always
  type: str
generated:
  description: Whether a new key was (or would be) generated.
  returned: always
  type: bool
escrow_path:
  description: The age-encrypted copy, or null without recipients.
  returned: always
  type: str
escrow_recipients:
  description: The recipients of the escrow copy, sorted.
  returned: always
  type: list
  elements: str
actions:
  description: What was (or would be) done.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.keys.material import (
    FORMATS,
    converge,
)
from ansible_collections.blindvault.storage.plugins.module_utils.module import backend_errors


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            format=dict(type="str", choices=list(FORMATS), default="hex"),
            length=dict(type="int", default=32),
            escrow_recipients=dict(type="list", elements="str", default=[]),
            escrow_path=dict(type="path"),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if not 16 <= module.params["length"] <= 4096:
        module.fail_json(msg="length must be between 16 and 4096 bytes")
    with backend_errors(module):
        result = converge(module.params, module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
