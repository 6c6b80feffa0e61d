# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The current key of an encryption root, for modules that may have to load it.
    DOCUMENTATION = r"""
options:
  key:
    description:
      - The encryption root's key (a passphrase, or 64 hexadecimal characters for
        C(keyformat=hex)), used only when the key has to be loaded.
      - It reaches C(zfs load-key -L prompt) on standard input, never the command line, and is
        never returned or logged.
      - Mutually exclusive with O(key_file).
    type: str
  key_file:
    description:
      - A file on the managed host holding the encryption root's key, used only when the key
        has to be loaded (C(zfs load-key -L file://PATH)). The only way to give a V(raw) key.
      - Without O(key) and O(key_file), a key that has to be loaded comes from the root's own
        C(keylocation); a root whose C(keylocation) is C(prompt) then needs one of them.
    type: path
"""
