#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: loop_device
short_description: Attach file-backed loop devices with safe direct I/O choices
version_added: 0.1.0
description:
  - Creates sparse backing files, attaches them to loop devices, reconciles the settings of
    existing attachments, and detaches them again.
  - Finds an existing attachment of the same backing file (same inode and device) and reuses
    it, so a second run changes nothing.
  - Attaching uses C(losetup --find --show), which picks a free device and binds it in one
    step (no race between finding and attaching).
  - C(direct_io=auto) asks the kernel (statfs) which filesystem holds the backing file and turns
    direct I/O on only for ext4 and xfs. Loop devices with direct I/O over Btrfs files produced
    checksum errors in the field, so Btrfs, ZFS, tmpfs, overlay and unknown filesystems get it off.
  - Reads all loop devices with one C(losetup --list --json) however many files are declared.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  file:
    description:
      - Absolute path of the backing file.
      - Required unless O(devices) is given; mutually exclusive with it.
    type: path
  size:
    description:
      - Size of the backing file, created sparse when it does not exist (its parent directory
        must exist).
      - An existing smaller file is grown (and an attached device told with
        C(losetup --set-capacity)); a larger one is never shrunk, the module fails instead.
      - Bytes, or a number with V(K), V(M), V(G), V(T) (binary, also V(KiB)...) or V(KB), V(MB)...
        (decimal).
      - Only with O(state=attached).
    type: str
  state:
    description:
      - V(attached) the file is attached to a loop device.
      - V(detached) no loop device uses the file; the file is kept. A device still in use (a mount,
        a pool, a dm mapping or md array on it) is detached by the kernel only when it is closed.
      - V(absent) detached and the file removed. A device in use is refused before anything
        happens (close what holds it first).
    type: str
    choices: [attached, detached, absent]
    default: attached
  direct_io:
    description:
      - V(auto) on for ext4 and xfs backing filesystems, off for everything else.
      - V(on) is refused where auto would say off (Btrfs above all) unless O(force=true).
      - The kernel may still keep direct I/O off (for example when the sector size does not
        fit); the returned RV(direct_io) is what C(/sys/block/loopN/loop/dio) says afterwards.
    type: str
    choices: [auto, 'on', 'off']
    default: auto
  sector_size:
    description:
      - Logical sector size of the loop device. Changed live on an existing attachment.
      - Default is the kernel's (512) for new devices and "keep" for existing ones.
    type: int
    choices: [512, 4096]
  read_only:
    description:
      - Attach read-only. An existing attachment with the other setting is reported as an
        error, or detached and reattached with O(force=true).
    type: bool
    default: false
  force:
    description:
      - Allow O(direct_io=on) on filesystems where it is not known to be safe, and reattaching
        to change O(read_only).
    type: bool
    default: false
  devices:
    description:
      - Converge many loop devices in one call (one state read, then only the needed changes).
      - Each item takes the top-level options; those given at the top level are the defaults for
        every item.
      - Every item is validated and planned before anything changes.
    type: list
    elements: dict
    suboptions:
      file:
        description: See O(file). Required in every item.
        type: path
      size:
        description: See O(size).
        type: str
      state:
        description: See O(state).
        type: str
        choices: [attached, detached, absent]
      direct_io:
        description: See O(direct_io).
        type: str
        choices: [auto, 'on', 'off']
      sector_size:
        description: See O(sector_size).
        type: int
        choices: [512, 4096]
      read_only:
        description: See O(read_only).
        type: bool
      force:
        description: See O(force).
        type: bool
notes:
  - Needs C(losetup) from util-linux 2.29 or later (JSON output) and root privileges.
seealso:
  - name: losetup(8)
    description: The tool this module drives.
    link: https://man7.org/linux/man-pages/man8/losetup.8.html
"""

EXAMPLES = r"""
- name: A 64 MiB scratch disk, direct I/O decided by the backing filesystem
  blindvault.storage.loop_device:
    file: /srv/lab/disk0.img
    size: 64M
  register: disk0

- name: Three RAID members with 4K sectors in one call
  blindvault.storage.loop_device:
    sector_size: 4096
    devices:
      - {file: /srv/lab/m0.img, size: 256M}
      - {file: /srv/lab/m1.img, size: 256M}
      - {file: /srv/lab/m2.img, size: 256M}
  register: members

- name: Use the device names
  ansible.builtin.debug:
    msg: "{{ members.devices | map(attribute='device') | list }}"

- name: Detach and delete a scratch disk
  blindvault.storage.loop_device:
    file: /srv/lab/disk0.img
    state: absent
"""

RETURN = r"""
device:
  description: The loop device backing O(file) (the first, if several), or null when detached
    or not yet attached in check mode.
  returned: when O(file) is given
  type: str
  sample: /dev/loop3
devices:
  description:
    - Without O(devices), every loop device backing O(file).
    - With O(devices), one result per item, in order, each with the keys returned for a single
      file (RV(device), RV(backing_fs), RV(direct_io), ... ) plus C(changed) and C(devices).
  returned: always
  type: list
  elements: raw
  sample: ["/dev/loop3"]
file:
  description: The backing file, normalised.
  returned: when O(file) is given
  type: str
  sample: /srv/lab/disk0.img
backing_fs:
  description: Filesystem holding the backing file, from statfs (V(ext4) covers ext2/3/4).
  returned: when O(file) is given and O(state=attached)
  type: str
  sample: btrfs
direct_io:
  description: Whether the kernel uses direct I/O on the device afterwards
    (C(/sys/block/loopN/loop/dio)); in check mode, what would be requested.
  returned: when O(file) is given
  type: bool
  sample: false
direct_io_reason:
  description: Why direct I/O was turned on or off.
  returned: when O(file) is given and O(state=attached)
  type: str
  sample: "auto: btrfs: loop direct I/O causes checksum errors (seed 003), so off"
sector_size:
  description: Logical sector size of the device.
  returned: when O(file) is given
  type: int
  sample: 512
read_only:
  description: Whether the device is read-only.
  returned: when O(file) is given
  type: bool
  sample: false
size:
  description: Size of the backing file in bytes.
  returned: when O(file) is given
  type: int
  sample: 67108864
actions:
  description: The plan, in order; in check mode what would be done.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "create-file", "object": "/srv/lab/disk0.img", "reason": "sparse file of 67108864 bytes"},
           {"action": "attach", "object": "/srv/lab/disk0.img", "reason": "auto: ext4 supports direct I/O on loop devices",
            "command": "losetup --find --show --direct-io=on /srv/lab/disk0.img"}]
"""

from ansible_collections.blindvault.storage.plugins.module_utils.block.loop import (
    DIRECT_IO_MODES,
    LoopSpec,
    STATES,
    converge,
)
from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    exit_list_form,
    list_form_module,
    make_runner,
)

ITEM_SPEC = dict(
    file=dict(type="path", required=True),
    size=dict(type="str"),
    state=dict(type="str", choices=list(STATES), default="attached"),
    direct_io=dict(type="str", choices=list(DIRECT_IO_MODES), default="auto"),
    sector_size=dict(type="int", choices=[512, 4096]),
    read_only=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
)


def main():
    module, items = list_form_module(ITEM_SPEC, "devices", "file")
    with backend_errors(module):
        results = converge(make_runner(module), [LoopSpec(**item) for item in items])
    exit_list_form(module, results, "devices", "file", flat_single=True)


if __name__ == "__main__":
    main()
