#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: integrity_device
short_description: Standalone dm-integrity devices that turn silent corruption into read errors
version_added: 0.1.0
description:
  - Formats block devices with a dm-integrity superblock (C(integritysetup format)), opens them
    as C(/dev/mapper/NAME), closes them and erases them again.
  - Every sector gets a checksum (a tag). A sector whose data no longer matches its tag reads as
    an I/O error instead of wrong bytes, so md RAID built over such devices repairs it from
    redundancy (md trusts its disks and cannot tell which copy is right by itself).
  - Reads every open mapping with one C(dmsetup table) and one C(dmsetup status), whatever the
    number of devices; each device adds one C(blkid -p) and, when formatted, one
    C(integritysetup dump).
  - Formatting a device that carries any signature (a filesystem, LUKS, md, a partition table)
    is refused unless O(force=true). An existing dm-integrity device whose tag size or sector
    size differs from the request is reported, never reformatted.
  - The superblock does not record the checksum algorithm. An open mapping shows it (a
    different one is reported); when the module opens an existing device it reads the first
    sector once and warns if that fails (wrong algorithm or key, or never written).
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  device:
    description:
      - The block device to format or open (a disk, partition, loop device, zvol).
      - Required unless O(devices) is given; mutually exclusive with it.
    type: path
  name:
    description:
      - Device-mapper name of the mapping, C(/dev/mapper/NAME). Required for O(state=opened).
    type: str
  state:
    description:
      - V(opened) formatted (when blank) and open as C(/dev/mapper/NAME).
      - V(closed) formatted and not open (an open mapping is closed; refused while md or
        anything else holds it).
      - V(present) formatted; an open mapping stays open, a closed one stays closed.
      - V(absent) the mapping closed and the dm-integrity signature erased (C(wipefs --all)).
        The data's checksums are gone with it, so this needs O(force=true).
    type: str
    choices: [opened, closed, present, absent]
    default: opened
  algorithm:
    description:
      - Checksum of each sector. V(crc32c) (the default, fast, hardware-accelerated) and V(crc32)
        detect corruption; V(sha1), V(sha256) are stronger hashes; V(hmac-sha256) is keyed
        (O(key_file)) so that an attacker who can write the disk cannot forge tags.
    type: str
    choices: [crc32c, crc32, sha1, sha256, hmac-sha256]
    default: crc32c
  key_file:
    description:
      - File holding the HMAC key for O(algorithm=hmac-sha256) (16 to 4096 bytes; 32 random
        bytes is usual). Passed to C(integritysetup) as a path; the key never reaches argv.
    type: path
  tag_size:
    description:
      - Bytes of checksum per sector. Default is the algorithm's full size (4 for crc32c/crc32,
        20 for sha1, 32 for sha256 and hmac-sha256).
    type: int
  sector_size:
    description:
      - Sector size of the integrity device. Default 4096 when formatting (less tag overhead,
        faster than 512), and whatever the superblock says on an existing device.
    type: int
    choices: [512, 1024, 2048, 4096]
  journal:
    description:
      - How the mapping is opened. V(journal) writes data and tags through a journal, so a crash
        cannot leave a sector whose tag does not match (the safe default; writes twice).
        V(bitmap) marks dirty regions and recalculates their tags after a crash (faster; a crash
        can hide corruption in those regions). V(none) has neither (fastest; a crash can leave
        sectors that read as errors until rewritten, which md RAID above repairs).
      - Changing it on an open mapping closes and reopens it (refused while it is in use).
    type: str
    choices: [journal, bitmap, none]
    default: journal
  wipe:
    description:
      - How the tags are initialised when formatting.
      - V(full) C(integritysetup) writes the whole device (slowest).
      - V(zero) C(--no-wipe), then the module opens the mapping without a journal and writes
        zeros over it with direct I/O (C(dd oflag=direct)). Which of V(full) and V(zero) is
        faster depends on the hardware (in the lab they were even; C(make bench) measures
        both); RV(wipe_seconds) says how long either took.
      - V(none) C(--no-wipe) only. Every sector then reads as an I/O error until it has been
        written once; the module warns. Only for members that are fully written right away
        (md RAID created without O(blindvault.storage.md_array#module:assume_clean), which
        resyncs every sector).
    type: str
    choices: [full, none, zero]
    default: full
  force:
    description:
      - Format a device that carries another signature (destroys what is on it), and allow
        O(state=absent).
    type: bool
    default: false
  devices:
    description:
      - Converge many dm-integrity devices in one call (one state read, then only the needed
        changes), such as the members of an md array.
      - Each item takes the top-level options; those given at the top level are the defaults for
        every item. Every item is validated and planned before anything changes.
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
        choices: [opened, closed, present, absent]
      algorithm:
        description: See O(algorithm).
        type: str
        choices: [crc32c, crc32, sha1, sha256, hmac-sha256]
      key_file:
        description: See O(key_file).
        type: path
      tag_size:
        description: See O(tag_size).
        type: int
      sector_size:
        description: See O(sector_size).
        type: int
        choices: [512, 1024, 2048, 4096]
      journal:
        description: See O(journal).
        type: str
        choices: [journal, bitmap, none]
      wipe:
        description: See O(wipe).
        type: str
        choices: [full, none, zero]
      force:
        description: See O(force).
        type: bool
notes:
  - Needs C(integritysetup) (cryptsetup 2.2 or later), C(dmsetup), C(blkid), C(wipefs),
    C(dd), the C(dm-integrity) kernel module and root privileges.
  - md RAID over dm-integrity members is the pattern this module exists for; see
    O(blindvault.storage.md_array#module:assume_clean) for creating an array over freshly
    zeroed members without a resync.
seealso:
  - module: blindvault.storage.loop_device
  - name: integritysetup(8)
    description: The tool this module drives.
    link: https://man7.org/linux/man-pages/man8/integritysetup.8.html
  - name: dm-integrity
    description: The kernel's documentation of the target.
    link: https://docs.kernel.org/admin-guide/device-mapper/dm-integrity.html
"""

EXAMPLES = r"""
- name: One dm-integrity device, open as /dev/mapper/int0
  blindvault.storage.integrity_device:
    device: /dev/sdb
    name: int0

- name: Three RAID members in one call, tags initialised by a direct-I/O zero fill
  blindvault.storage.integrity_device:
    wipe: zero
    journal: bitmap
    devices:
      - {device: /dev/sdb, name: int0}
      - {device: /dev/sdc, name: int1}
      - {device: /dev/sdd, name: int2}
  register: members

- name: Keyed tags (an attacker with write access to the disk cannot forge them)
  blindvault.storage.integrity_device:
    device: /dev/sde
    name: sealed
    algorithm: hmac-sha256
    key_file: /etc/blindvault/integrity.key

- name: How many corrupted reads each member caught
  ansible.builtin.debug:
    msg: "{{ members.devices | map(attribute='failures') | list }}"

- name: Close a member (refused while md still uses it)
  blindvault.storage.integrity_device:
    device: /dev/sdb
    state: closed
"""

RETURN = r"""
device:
  description: The block device, resolved (symlinks followed).
  returned: when O(device) is given
  type: str
  sample: /dev/loop3
name:
  description: The mapping's name when open (or about to be, in check mode).
  returned: when O(device) is given
  type: str
  sample: int0
mapper:
  description: C(/dev/mapper/NAME) when open, else null.
  returned: when O(device) is given
  type: str
  sample: /dev/mapper/int0
opened:
  description: Whether the mapping is open afterwards.
  returned: when O(device) is given
  type: bool
  sample: true
state:
  description: V(opened), V(closed) or V(absent) afterwards.
  returned: when O(device) is given
  type: str
  sample: opened
algorithm:
  description: The checksum algorithm (the requested one; only an open mapping shows it).
  returned: when O(device) is given
  type: str
  sample: crc32c
tag_size:
  description: Bytes of checksum per sector, from the superblock.
  returned: when O(device) is given
  type: int
  sample: 4
sector_size:
  description: Sector size of the integrity device.
  returned: when O(device) is given
  type: int
  sample: 4096
journal:
  description: The mode of the open mapping (V(journal), V(bitmap), V(none)).
  returned: when O(device) is given
  type: str
  sample: journal
failures:
  description:
    - Integrity mismatches the kernel has counted on the open mapping since it was opened (what
      C(integritysetup status) shows as C(failures)); each one was returned as an I/O error.
  returned: when O(device) is given
  type: int
  sample: 0
size:
  description: Bytes the open mapping provides (what is left for data after the tags).
  returned: when O(device) is given
  type: int
  sample: 62914560
wipe_seconds:
  description: How long initialising the tags took (O(wipe=full) or O(wipe=zero)), when this run
    formatted the device; null otherwise.
  returned: when O(device) is given
  type: float
  sample: 4.2
devices:
  description: With O(devices), one result per item, in order, each with the keys above plus
    C(changed) and C(actions).
  returned: when O(devices) is given
  type: list
  elements: dict
actions:
  description: The plan, in order; in check mode what would be done.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "format", "object": "/dev/loop3", "reason": "tags initialised by integritysetup",
            "command": "integritysetup format --batch-mode /dev/loop3 --tag-size 4 --sector-size 4096 --integrity crc32c"}]
"""

from ansible_collections.blindvault.storage.plugins.module_utils.block.integrity import (
    ALGORITHMS,
    IntegritySpec,
    JOURNALS,
    SECTOR_SIZES,
    STATES,
    WIPES,
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
    state=dict(type="str", choices=list(STATES), default="opened"),
    algorithm=dict(type="str", choices=list(ALGORITHMS), default="crc32c"),
    key_file=dict(type="path"),
    tag_size=dict(type="int"),
    sector_size=dict(type="int", choices=list(SECTOR_SIZES)),
    journal=dict(type="str", choices=list(JOURNALS), default="journal"),
    wipe=dict(type="str", choices=list(WIPES), default="full"),
    force=dict(type="bool", default=False),
)


def main():
    module, items = list_form_module(ITEM_SPEC, "devices", "device")
    with backend_errors(module):
        specs = [IntegritySpec(**item) for item in items]
        results = converge(make_runner(module), specs)
    exit_list_form(module, results, "devices", "device", flat_single=True)


if __name__ == "__main__":
    main()
