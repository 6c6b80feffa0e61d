#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: luks2_volume
short_description: LUKS2 volumes with optional dm-integrity, opened and closed safely
version_added: 0.1.0
description:
  - Formats a block device as LUKS2 (optionally authenticated with dm-integrity), opens and
    closes its dm-crypt mapping, adds and removes keys, keeps a header backup, and erases it.
  - Reads the device once (C(blkid -p) and one C(cryptsetup luksDump --dump-json-metadata)); open
    mappings come from sysfs (device-mapper UUID C(CRYPT-LUKS2-<uuid>-<name>)).
  - Never formats over existing data unless O(force=true); never reformats an existing LUKS2
    volume. Format parameters of an existing volume that differ from the requested ones
    (O(cipher), O(key_size), O(integrity), O(sector_size)) are reported as an error; only the
    O(label) is changed in place (C(cryptsetup config --label)).
  - Key material reaches cryptsetup on standard input (C(--key-file -)), as the given
    O(key_file), or for new keys as a 0600 file in a private 0700 directory removed right after;
    never on the command line, never in the result.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  device:
    description:
      - The block device holding (or to hold) the LUKS2 volume.
      - Required unless O(volumes) is given; mutually exclusive with it.
    type: path
  name:
    description:
      - Name of the dm-crypt mapping, opened as C(/dev/mapper/NAME).
      - Required with O(state=opened). With O(state=closed) and without O(name), every mapping
        of the volume is closed.
    type: str
  state:
    description:
      - V(present) the device is a LUKS2 volume (formatted if blank); its mapping is left as it is.
      - V(opened) as V(present), and the mapping O(name) is open.
      - V(closed) as V(present), and the mapping is closed.
      - V(absent) closes the volume's mappings and erases its keyslots (C(cryptsetup erase)) and
        signature (C(wipefs --all)). That destroys every way to read the data, so it is refused
        unless O(force=true). A device that holds no LUKS2 volume is left alone.
    type: str
    choices: [present, absent, opened, closed]
    default: present
  passphrase:
    description:
      - The key that formats, opens and authorises changes, used byte for byte (no trailing
        newline is added or removed). Given to cryptsetup on standard input.
      - Mutually exclusive with O(key_file). Not needed to close, to check an existing volume, or
        to remove keys.
    type: str
  key_file:
    description:
      - A file with the key (C(cryptsetup --key-file)), instead of O(passphrase). It should be
        mode 0600 or 0400; the module warns otherwise.
    type: path
  cipher:
    description:
      - Cipher of a new volume (C(--cipher)); cryptsetup's default (V(aes-xts-plain64)) when
        unset, V(chacha20-random) with O(integrity=poly1305).
      - Compared with an existing volume's only when set.
    type: str
  key_size:
    description:
      - Encryption key size in bits (C(--key-size)), without the integrity key. XTS takes 256 or
        512, V(chacha20-random) 256. Compared with an existing volume's only when set.
    type: int
  integrity:
    description:
      - Authenticated encryption with dm-integrity (C(--integrity)). V(poly1305) needs cipher
        V(chacha20-random) (the default with it); the HMACs go with XTS ciphers.
      - Always compared with an existing volume.
      - dm-integrity keeps tags for every sector, so the volume is a little smaller and writes
        are slower; it detects (and with md RAID above lets md repair) silent corruption.
    type: str
    choices: [none, hmac-sha256, hmac-sha512, poly1305]
    default: none
  sector_size:
    description: Encryption sector size of a new volume (C(--sector-size)); compared when set.
    type: int
    choices: [512, 1024, 2048, 4096]
  pbkdf:
    description:
      - Key derivation for new keyslots (format and O(add_keys)). Existing keyslots keep theirs.
      - V(argon2id) is memory-hard and the right default; V(pbkdf2) only for constrained systems
        and tests.
    type: str
    choices: [argon2id, pbkdf2]
    default: argon2id
  pbkdf_memory:
    description: Memory cost of argon2id in KiB (C(--pbkdf-memory)). Not with V(pbkdf2).
    type: int
  pbkdf_iterations:
    description:
      - Fixed iteration (time) cost (C(--pbkdf-force-iterations)) instead of a benchmark; at
        least 1000 for V(pbkdf2), 4 for V(argon2id). Mutually exclusive with O(iter_time).
    type: int
  iter_time:
    description: Milliseconds of key derivation to benchmark for (C(--iter-time)).
    type: int
  label:
    description:
      - The LUKS2 label (up to 47 characters). Set at format time; changed in place on an
        existing volume with C(cryptsetup config --label).
    type: str
  wipe:
    description:
      - With O(integrity), how the integrity tags are initialised at format time.
      - V(full) writes the whole device, which is slow (about a third of a second per MiB in a small VM).
      - V(none) skips that (C(--integrity-no-wipe)); reading a sector never written then fails
        with an I/O error until it is written once (a filesystem or md sync writes it all). The
        module warns when it formats so.
      - Ignored without O(integrity).
    type: str
    choices: [full, none]
    default: full
  add_keys:
    description:
      - Passphrases that must unlock a keyslot. Each is tested with
        C(cryptsetup open --test-passphrase) (on standard input) and added with
        C(cryptsetup luksAddKey) only when it unlocks none, so a second run changes nothing.
      - Adding needs O(passphrase) or O(key_file).
    type: list
    elements: str
  remove_keys:
    description:
      - Passphrases that must no longer unlock any keyslot (C(cryptsetup luksRemoveKey), key on
        standard input); the ones that already unlock nothing are skipped.
      - Refused when it would leave no keyslot, or when it lists the key this task unlocks with.
    type: list
    elements: str
  header_backup:
    description:
      - Path of a header backup (C(cryptsetup luksHeaderBackup)), written mode 0600 through a
        private temporary directory next to it and renamed into place.
      - Written when missing, when the header changes in this run, or when it differs from the
        device's header (an older backup still opens with keys removed since, so it is replaced).
        A backup of another volume (another UUID) is never replaced, and a new backup that does
        not pass its checksum never replaces the old one.
      - With O(state=absent), written before the header is erased.
      - When the device shows no readable LUKS2 header but this file holds one, the device's
        header was probably overwritten, and the task refuses (formatting would destroy the
        volume, even with O(force)) unless O(restore_header) is set.
    type: path
  restore_header:
    description:
      - When the device's LUKS2 header is missing or damaged (blkid finds no signature, or
        neither metadata copy passes its checksum), restore it from O(header_backup)
        (C(cryptsetup luksHeaderRestore)) before anything else, then converge as usual. An open
        mapping of the volume stays open.
      - Needs O(passphrase) or O(key_file), which must open the backup's keyslots (tested
        first). Refused when the device carries another signature, is held by something other
        than this volume's own mappings, its damaged header names another volume, or the
        backup's volume is present on another device. A header that checks out is never
        overwritten.
      - It cannot tell a mistyped O(device) holding no signature from the damaged one; check
        the device before setting it.
    type: bool
    default: false
  allow_discards:
    description:
      - Pass discards (TRIM) through the mapping (C(--allow-discards); enabled live with
        C(cryptsetup refresh) on an open mapping). Reveals which blocks are unused.
      - Refused with O(integrity), because dm-crypt cannot discard on integrity devices.
    type: bool
    default: false
  force:
    description:
      - Format a device that carries another signature (a filesystem, a partition table, RAID
        metadata), and erase the volume with O(state=absent).
    type: bool
    default: false
  volumes:
    description:
      - Converge several LUKS2 volumes in one call (for example the members of an md RAID1);
        each is read and planned, so validated, before anything changes.
      - Each item takes the top-level options; those given at the top level are the defaults for
        every item (a shared O(pbkdf), O(integrity) or O(passphrase)).
      - Required unless O(device) is given; mutually exclusive with it.
    type: list
    elements: dict
    suboptions:
      device:
        description: See O(device). Required in every item.
        type: path
      name:
        description: See O(name).
        type: str
      state:
        description: See O(state).
        type: str
        choices: [present, absent, opened, closed]
      passphrase:
        description: See O(passphrase).
        type: str
      key_file:
        description: See O(key_file).
        type: path
      cipher:
        description: See O(cipher).
        type: str
      key_size:
        description: See O(key_size).
        type: int
      integrity:
        description: See O(integrity).
        type: str
        choices: [none, hmac-sha256, hmac-sha512, poly1305]
      sector_size:
        description: See O(sector_size).
        type: int
        choices: [512, 1024, 2048, 4096]
      pbkdf:
        description: See O(pbkdf).
        type: str
        choices: [argon2id, pbkdf2]
      pbkdf_memory:
        description: See O(pbkdf_memory).
        type: int
      pbkdf_iterations:
        description: See O(pbkdf_iterations).
        type: int
      iter_time:
        description: See O(iter_time).
        type: int
      label:
        description: See O(label).
        type: str
      wipe:
        description: See O(wipe).
        type: str
        choices: [full, none]
      add_keys:
        description: See O(add_keys).
        type: list
        elements: str
      remove_keys:
        description: See O(remove_keys).
        type: list
        elements: str
      header_backup:
        description: See O(header_backup).
        type: path
      restore_header:
        description: See O(restore_header).
        type: bool
      allow_discards:
        description: See O(allow_discards).
        type: bool
      force:
        description: See O(force).
        type: bool
notes:
  - Needs cryptsetup 2.4 or later (C(--dump-json-metadata)), blkid, wipefs and root privileges;
    O(integrity) needs the dm-integrity kernel module.
  - Changing O(cipher), O(integrity) or O(sector_size) of existing data needs
    C(cryptsetup reencrypt) or a new volume; the module reports the difference and stops.
seealso:
  - module: blindvault.storage.loop_device
  - name: cryptsetup(8)
    description: The tool this module drives.
    link: https://man7.org/linux/man-pages/man8/cryptsetup.8.html
"""

EXAMPLES = r"""
- name: Two authenticated volumes for an md RAID1, in one call (one shared passphrase)
  blindvault.storage.luks2_volume:
    state: opened
    integrity: hmac-sha256
    sector_size: 4096
    passphrase: "{{ vault_luks_passphrase }}"
    volumes:
      - {device: /dev/sdb, name: mirror0}
      - {device: /dev/sdc, name: mirror1}

- name: An authenticated LUKS2 volume, opened as /dev/mapper/vault
  blindvault.storage.luks2_volume:
    device: /dev/sdb
    name: vault
    state: opened
    key_file: /etc/blindvault/keys/vault.key
    integrity: hmac-sha256
    sector_size: 4096
    label: vault
    header_backup: /root/vault.luks-header
  register: vault

- name: Add a recovery passphrase and retire an old one (idempotent)
  blindvault.storage.luks2_volume:
    device: /dev/sdb
    key_file: /etc/blindvault/keys/vault.key
    integrity: hmac-sha256
    add_keys: ["{{ recovery_passphrase }}"]
    remove_keys: ["{{ old_passphrase }}"]

- name: Close it
  blindvault.storage.luks2_volume:
    device: /dev/sdb
    name: vault
    integrity: hmac-sha256
    state: closed

- name: A stray dd overwrote the header; bring the volume back from its header backup
  blindvault.storage.luks2_volume:
    device: /dev/sdb
    name: vault
    state: opened
    key_file: /etc/blindvault/keys/vault.key
    integrity: hmac-sha256
    header_backup: /root/vault.luks-header
    restore_header: true

- name: Destroy it on purpose (the header backup stays)
  blindvault.storage.luks2_volume:
    device: /dev/sdb
    state: absent
    force: true
"""

RETURN = r"""
volumes:
  description: With O(volumes), one result per item, in order, each with the keys below plus
    C(changed) and C(actions).
  returned: when O(volumes) is given
  type: list
  elements: dict
device:
  description: The device, its real path.
  returned: when O(device) is given
  type: str
  sample: /dev/loop3
name:
  description: The mapping name given.
  returned: when O(device) is given
  type: str
  sample: vault
mapper:
  description: Path of the mapping, C(/dev/mapper/NAME) (null without O(name)).
  returned: when O(device) is given
  type: str
  sample: /dev/mapper/vault
opened:
  description: Whether the mapping O(name) is open afterwards (in check mode, would be).
  returned: when O(device) is given
  type: bool
  sample: true
opened_as:
  description: Every open mapping of the volume.
  returned: when O(device) is given
  type: list
  elements: str
  sample: [vault]
uuid:
  description: The LUKS2 UUID (null when absent, or not yet formatted in check mode).
  returned: when O(device) is given
  type: str
  sample: 3f1c2a4e-8d63-4f7b-9d0e-5c2b8a1f6e90
cipher:
  description: The data segment's cipher.
  returned: when O(device) is given
  type: str
  sample: aes-xts-plain64
key_size:
  description: Encryption key size in bits, without the integrity key.
  returned: when O(device) is given
  type: int
  sample: 512
integrity:
  description: The integrity algorithm (V(none) without), null when there is no volume.
  returned: when O(device) is given
  type: str
  sample: hmac-sha256
sector_size:
  description: Encryption sector size.
  returned: when O(device) is given
  type: int
  sample: 4096
label:
  description: The LUKS2 label.
  returned: when O(device) is given
  type: str
  sample: vault
keyslots:
  description: Number of keyslots in use.
  returned: when O(device) is given
  type: int
  sample: 2
actions:
  description: The plan, in order; in check mode what would be done. Commands show key files
    as placeholders and never key material.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "format", "object": "/dev/loop3", "reason": "blank device",
            "command": "cryptsetup luksFormat --batch-mode --type luks2 --integrity hmac-sha256 --pbkdf argon2id --key-file - /dev/loop3"}]
"""


from ansible_collections.blindvault.storage.plugins.module_utils.block.luks import (
    INTEGRITY,
    PBKDFS,
    SECTOR_SIZES,
    STATES,
    WIPES,
    LuksSpec,
    converge,
)
from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    exit_list_form,
    list_form_module,
    make_runner,
)

ITEM_SPEC = dict(
    device=dict(type="path", required=True),
    name=dict(type="str"),
    state=dict(type="str", choices=list(STATES), default="present"),
    passphrase=dict(type="str", no_log=True),
    key_file=dict(type="path", no_log=False),
    cipher=dict(type="str"),
    key_size=dict(type="int", no_log=False),
    integrity=dict(type="str", choices=list(INTEGRITY), default="none"),
    sector_size=dict(type="int", choices=list(SECTOR_SIZES)),
    pbkdf=dict(type="str", choices=list(PBKDFS), default="argon2id"),
    pbkdf_memory=dict(type="int"),
    pbkdf_iterations=dict(type="int"),
    iter_time=dict(type="int"),
    label=dict(type="str"),
    wipe=dict(type="str", choices=list(WIPES), default="full"),
    add_keys=dict(type="list", elements="str", no_log=True),
    remove_keys=dict(type="list", elements="str", no_log=True),
    header_backup=dict(type="path"),
    restore_header=dict(type="bool", default=False),
    allow_discards=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
)


def main():
    module, items = list_form_module(ITEM_SPEC, "volumes", "device")
    with backend_errors(module):
        results = converge(make_runner(module), [LuksSpec(**item) for item in items])
    exit_list_form(module, results, "volumes", "device", flat_single=True)


if __name__ == "__main__":
    main()
