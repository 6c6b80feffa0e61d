#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: md_array
short_description: Create, assemble, stop, check and heal md RAID arrays
version_added: 0.1.0
description:
  - Manages one Linux md (software RAID) array C(/dev/md/NAME) with C(mdadm). It creates it over
    blank members, assembles it from members that carry its superblock, stops or removes it,
    starts C(check)/C(repair) scrubs and re-adds members that md marked faulty.
  - Reads a running array with one C(mdadm --detail --export) and sysfs (C(/sys/block/mdX/md/),
    no process); members of an array that is not running with one C(blkid -p) for all of them.
  - An existing array whose level, chunk or members differ from the request is reported as an
    error; it is never reshaped or rebuilt silently.
  - md alone cannot tell which copy of a block is right. On plain devices a silently corrupted
    member returns wrong data and a C(check) only counts mismatches (RV(mismatch_cnt)); put md on
    dm-integrity members (this collection's dm-integrity or LUKS2-with-integrity modules)
    so corruption reads as an error that md repairs from the other members.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  name:
    description:
      - Name of the array; the device is C(/dev/md/NAME).
      - Arrays are created with C(--homehost=any), so the name stays the same on every host that
        assembles them.
    type: str
    required: true
  level:
    description:
      - RAID level. Required to create an array; compared with a running array when given.
      - RAID1 needs at least 2 devices, RAID5 3, RAID6 4, RAID10 2.
    type: int
    choices: [1, 5, 6, 10]
  devices:
    description:
      - Active members (block devices), in order. Required to create or assemble; compared with
        a running array when given (as a set, since roles may have moved after a rebuild).
      - Each must exist and may be listed once (together with O(spares)).
    type: list
    elements: path
  spares:
    description:
      - Hot spares. Created with the array; listed spares missing from a running array are added
        (after the same blank check as at creation).
    type: list
    elements: path
  state:
    description:
      - V(present) the array runs; it is assembled from its members when they carry its superblock,
        otherwise created over blank members.
      - V(assembled) the array runs, assembled from O(devices) (C(mdadm --assemble)); it is never
        created.
      - V(stopped) the array is stopped (C(mdadm --stop)); the members keep their superblocks.
      - V(absent) the array is stopped and C(mdadm --zero-superblock) is run on every member.
        That destroys the array, so it is refused unless O(force=true) when there is anything to
        destroy; an array that is already gone is not a change and needs no O(force).
    type: str
    choices: [present, absent, assembled, stopped]
    default: present
  metadata:
    description:
      - Superblock format at creation. Cannot change later (a different one is warned about).
    type: str
    choices: ['0.90', '1.0', '1.1', '1.2']
    default: '1.2'
  chunk:
    description:
      - Chunk size for RAID5, RAID6 and RAID10, e.g. V(64K) or V(512K) (a power of two, at
        least 4K); a bare number is KiB, as for C(mdadm --chunk). Default is mdadm's (512K).
        Not for RAID1.
    type: str
  bitmap:
    description:
      - Write-intent bitmap. V(internal) lets a briefly missing member catch up with only the
        changed regions (C(--re-add)) instead of a full rebuild; V(none) has none.
      - Default is mdadm's choice at creation and "keep" for a running array; given for a running
        array, it is changed live (C(mdadm --grow --bitmap)).
    type: str
    choices: [internal, none]
  assume_clean:
    description:
      - Create without the initial resync (C(--assume-clean)).
      - Only sensible when every member reads as zeros already, for instance freshly formatted
        dm-integrity members that were zero-filled. On anything else parity and mirrors start out
        inconsistent, and the first C(check) reports mismatches that are not corruption (a
        C(repair) then rewrites parity from whatever the members hold).
      - Ignored for an array that exists already.
    type: bool
    default: false
  action:
    description:
      - Writes to C(/sys/block/mdX/md/sync_action). V(check) reads every member and counts
        mismatches (RV(mismatch_cnt)); V(repair) also rewrites them; V(idle) stops a running
        check, repair or resync.
      - A check or repair already running is not started again (no change). Another operation
        still running (resync, recovery) is an error unless O(wait=true), which waits for it first.
      - Needs a running array (O(state=present) or O(state=assembled)).
    type: str
    choices: [check, repair, idle]
  wait:
    description:
      - Wait until md is idle (C(sync_action) polled in sysfs) before returning, so that the
        results (RV(mismatch_cnt), RV(degraded)) describe the finished check, repair, initial
        resync or recovery.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds O(wait) waits at most; then the module fails, and md carries on in the background.
    type: int
    default: 3600
  readd_failed:
    description:
      - Bring back members that md marked faulty (for example kicked after read errors reported
        by dm-integrity) with C(mdadm --manage --remove), then C(--re-add). When md refuses the
        re-add (no bitmap, or the member is too far behind), the member's stale superblock is
        zeroed and it is C(--add)ed for a full rebuild from the other members.
      - Members listed in O(devices) that a running, degraded array lacks are re-added too when
        they carry the array's superblock (same UUID).
      - A member that fails again is probably a failing disk; look at RV(members) C(errors).
    type: bool
    default: false
  force:
    description:
      - Create (or add a spare) over devices that carry a signature (filesystem, LUKS, another
        array's superblock...), which destroys what is on them.
      - Members that carry the superblock of the array named O(name) are always assembled, never
        created over, even with O(force=true); to start afresh, remove the array first
        (O(state=absent) with O(force=true)).
      - Allow O(state=absent) to zero the members' superblocks.
    type: bool
    default: false
notes:
  - Needs C(mdadm), C(blkid) and root privileges; C(/dev/md/NAME) links are made by udev.
  - A device in use by another array or device-mapper mapping (sysfs C(holders)) is never touched.
seealso:
  - module: blindvault.storage.loop_device
  - name: mdadm(8)
    description: The tool this module drives.
    link: https://man7.org/linux/man-pages/man8/mdadm.8.html
  - name: md(4)
    description: sysfs attributes (sync_action, mismatch_cnt, dev-*/errors).
    link: https://man7.org/linux/man-pages/man4/md.4.html
"""

EXAMPLES = r"""
- name: RAID5 over three dm-integrity members that were zero-filled (no initial resync needed)
  blindvault.storage.md_array:
    name: vault
    level: 5
    devices: [/dev/mapper/int0, /dev/mapper/int1, /dev/mapper/int2]
    bitmap: internal
    assume_clean: true

- name: Monthly scrub; fail the play if md found inconsistent blocks
  blindvault.storage.md_array:
    name: vault
    action: check
    wait: true
  register: scrub
  failed_when: scrub.mismatch_cnt > 0

- name: Bring back members md kicked after integrity read errors, and wait for the recovery
  blindvault.storage.md_array:
    name: vault
    readd_failed: true
    wait: true

- name: Stop the array (members keep their superblocks)
  blindvault.storage.md_array:
    name: vault
    state: stopped

- name: Assemble it again
  blindvault.storage.md_array:
    name: vault
    state: assembled
    devices: [/dev/mapper/int0, /dev/mapper/int1, /dev/mapper/int2]

- name: Destroy it (zeroes the md superblocks)
  blindvault.storage.md_array:
    name: vault
    state: absent
    force: true
    devices: [/dev/mapper/int0, /dev/mapper/int1, /dev/mapper/int2]
"""

RETURN = r"""
name:
  description: The array's name.
  returned: always
  type: str
  sample: vault
device:
  description: C(/dev/md/NAME) while the array runs (or would run, in check mode), else null.
  returned: always
  type: str
  sample: /dev/md/vault
kernel_device:
  description: The kernel's device for it (C(/dev/mdX)), null when not running.
  returned: always
  type: str
  sample: /dev/md127
uuid:
  description: The array's UUID (mdadm's notation), null when not running.
  returned: always
  type: str
  sample: 3c1b5a4e:1f0e2a7b:9d8c6f5e:4a3b2c1d
level:
  description: RAID level (number).
  returned: always
  type: int
  sample: 5
degraded:
  description: Whether the array runs with members missing or faulty (sysfs C(md/degraded)).
  returned: always
  type: bool
  sample: false
state:
  description: C(md/array_state) (V(clean), V(active), V(read-auto)...), null when not running.
  returned: always
  type: str
  sample: clean
sync_action:
  description: C(md/sync_action) after the run (V(idle), V(check), V(resync), V(recover)...).
  returned: always
  type: str
  sample: idle
mismatch_cnt:
  description: C(md/mismatch_cnt), sectors found inconsistent by the last check or repair
    (or initial resync).
  returned: always
  type: int
  sample: 0
members:
  description: Every member from C(/sys/block/mdX/md/dev-*/).
  returned: always
  type: list
  elements: dict
  contains:
    device:
      description: The member's block device.
      type: str
    kernel_name:
      description: Its kernel name (C(loop0), C(dm-3)).
      type: str
    slot:
      description: Its role in the array; null for a spare or a faulty member.
      type: int
    state:
      description: C(dev-*/state), e.g. V(in_sync), V(faulty), V(spare), V(in_sync,write_mostly).
      type: str
    errors:
      description: C(dev-*/errors), read errors md corrected (or that kicked the member).
      type: int
  sample: [{"device": "/dev/dm-1", "kernel_name": "dm-1", "slot": 1, "state": "in_sync", "errors": 1864}]
notes:
  description: How re-added members came back (V(re-added), or added for a full rebuild).
  returned: always
  type: list
  elements: str
  sample: ["/dev/loop1: re-added"]
actions:
  description: The plan, in order; in check mode what would be done.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "create", "object": "/dev/md/vault", "reason": "RAID5 over 3 devices",
            "command": "mdadm --create /dev/md/vault --run --homehost=any --level=5 --raid-devices=3 --metadata=1.2 /dev/dm-0 /dev/dm-1 /dev/dm-2"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.block.md import (
    BITMAPS,
    LEVELS,
    METADATA,
    STATES,
    SYNC_ACTIONS,
    MdSpec,
    converge,
)
from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    make_runner,
)

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    level=dict(type="int", choices=list(LEVELS)),
    devices=dict(type="list", elements="path"),
    spares=dict(type="list", elements="path"),
    state=dict(type="str", choices=list(STATES), default="present"),
    metadata=dict(type="str", choices=list(METADATA), default="1.2"),
    chunk=dict(type="str"),
    bitmap=dict(type="str", choices=list(BITMAPS)),
    assume_clean=dict(type="bool", default=False),
    action=dict(type="str", choices=list(SYNC_ACTIONS)),
    wait=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=3600),
    readd_failed=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    with backend_errors(module):
        spec = MdSpec(**module.params)
        result = converge(make_runner(module), spec)
    for warning in result.pop("warnings"):
        module.warn(warning)
    result["diff"].update(before_header=spec.path, after_header=spec.path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
