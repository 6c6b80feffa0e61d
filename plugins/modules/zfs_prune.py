#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_prune
short_description: Destroy old ZFS snapshots by retention rules, never a replica's last common base
version_added: 0.1.0
description:
  - Destroys snapshots of O(name) (and with O(recursive=true) of each descendant, judged on its own
    snapshots) that no retention rule keeps. Only snapshots whose short name matches O(match) are
    candidates; others are never touched.
  - "Retention rules, any combination (a snapshot kept by any rule stays): O(keep_last) keeps the
    newest N; O(hourly), O(daily), O(weekly), O(monthly) and O(yearly) keep the newest snapshot of
    each of the last N hours, days, ISO weeks, months or years that have candidate snapshots, by
    their C(creation) time (like sanoid). A dataset that stopped getting snapshots keeps them."
  - At least one rule is required; with none the task fails instead of destroying everything.
    V(0) is a valid count (O(keep_last=0) with O(match) clears a naming scheme).
  - "Whatever the rules say, these stay and are reported in RV(kept) with the reason: the newest
    snapshot of every dataset (the base of its next incremental send, and on a carrier the base of
    the upstream replication); for every dataset, the newest snapshot it shares (by guid) with its
    replica on each of O(targets), and the snapshot an interrupted receive there is resuming to
    (safety rule R4); held snapshots (C(zfs hold), any tag, never released here); origins of clones."
  - A listed target that does not exist, or a replica that shares no snapshot with its source
    dataset, fails the task before anything is touched.
  - With O(bookmark_before_destroy=true) each destroyed snapshot is bookmarked first
    (C(dataset#snapshot)), unless a bookmark of the same snapshot (same guid) exists under any name,
    so per-dataset incremental sends can still start from it. A same-named bookmark of another
    snapshot fails the task before anything is touched.
  - "Processes: one C(zfs list) of the source tree and one of all targets (two each without
    O(recursive): the datasets, then their snapshots), one C(zfs holds) when any snapshot is held, one
    C(zfs bookmark) per bookmark (ZFS 2.1 takes one per process), and one C(zfs destroy dataset@a,b,c)
    per dataset (ZFS destroys such a list atomically, all or nothing)."
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_DIFF
  - blindvault.storage.attributes.PLATFORM
options:
  name:
    description: The filesystem or volume whose snapshots are pruned.
    type: str
    required: true
  recursive:
    description: Its descendants too, each judged on its own snapshots.
    type: bool
    default: false
  keep_last:
    description: Keep the newest N candidate snapshots of each dataset.
    type: int
  hourly:
    description: Keep the newest snapshot of each of the last N hours that have candidate snapshots.
    type: int
  daily:
    description: Keep the newest snapshot of each of the last N days that have candidate snapshots.
    type: int
  weekly:
    description:
      - Keep the newest snapshot of each of the last N ISO weeks (Monday to Sunday) that have
        candidate snapshots.
    type: int
  monthly:
    description: Keep the newest snapshot of each of the last N months that have candidate snapshots.
    type: int
  yearly:
    description: Keep the newest snapshot of each of the last N years that have candidate snapshots.
    type: int
  utc:
    description:
      - Count hours, days, weeks, months and years in UTC. By default they follow the managed
        host's local time zone.
    type: bool
    default: false
  match:
    description:
      - Shell pattern on the snapshot's short name (after C(@)); only matching snapshots are
        candidates, e.g. V(autosnap_*).
      - The newest snapshot kept as a base is the dataset's newest of any name, so the newest matching
        snapshot goes when no rule keeps it and a newer snapshot of another name exists.
    type: str
    default: "*"
  bookmark_before_destroy:
    description: Bookmark each snapshot before destroying it (C(zfs bookmark dataset@s dataset#s)).
    type: bool
    default: true
  targets:
    description:
      - Replicas of O(name) on pools imported on this host (a carrier, a site pool). The dataset
        O(name)C(/x) maps to C(TARGET/x). For every dataset, the newest snapshot whose guid exists on
        its replica is kept.
      - A target that does not exist, or a replica sharing no snapshot with its source, fails the task.
        A source dataset with no replica on a target is reported in a warning.
    type: list
    elements: str
    default: []
notes:
  - Holds placed by M(blindvault.storage.zfs_replicate) (C(blindvault:*) tags) already keep the
    common bases of replicas that are not attached; O(targets) protects the bases of attached ones
    by reading them, holds or not.
  - Check mode reads the real state and returns exactly what would be destroyed (RV(destroyed)) and
    the commands (RV(actions)); with C(--diff) the snapshot and bookmark lists before and after.
seealso:
  - module: blindvault.storage.zfs_snapshot
  - module: blindvault.storage.zfs_bookmark
  - module: blindvault.storage.zfs_replicate
"""

EXAMPLES = r"""
- name: Keep 24 hourly, 14 daily and 8 weekly autosnaps, never a carrier's last common base
  blindvault.storage.zfs_prune:
    name: tank/vault
    recursive: true
    match: "autosnap_*"
    hourly: 24
    daily: 14
    weekly: 8
    targets:
      - carrier/vault

- name: On the carrier, keep only the newest replication snapshot (and its bases)
  blindvault.storage.zfs_prune:
    name: carrier/vault
    recursive: true
    match: "blindvault-*"
    keep_last: 1
  register: pruned

- name: What went, what stayed and why
  ansible.builtin.debug:
    msg: "{{ pruned.destroyed }} / {{ pruned.kept | map(attribute='reasons') | list }}"
"""

RETURN = r"""
destroyed:
  description: Snapshots destroyed (in check mode, that would be), per dataset oldest first.
  returned: always
  type: list
  elements: str
  sample: ["tank/vault@autosnap_2026-11-01_00:00:01_hourly"]
kept:
  description: Candidate snapshots that stay, each with why.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The snapshot.
      type: str
    reasons:
      description:
        - V(keep_last), V(hourly), V(daily), V(weekly), V(monthly), V(yearly), V(newest), V(held),
          C(base of TARGET), C(resume of TARGET) or C(origin of CLONES).
      type: list
      elements: str
  sample:
    - {"name": "tank/vault@autosnap_2026-11-20_00:00:01_daily", "reasons": ["daily", "base of carrier/vault"]}
held:
  description:
    - Snapshots no rule keeps that stay because they are held (skipped, holds left as they are).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The snapshot.
      type: str
    tags:
      description: Its hold tags.
      type: list
      elements: str
bookmarks:
  description: Bookmarks created before destroying (or that would be).
  returned: always
  type: list
  elements: str
  sample: ["tank/vault#autosnap_2026-11-01_00:00:01_hourly"]
bases:
  description: Per replica dataset on O(targets), the source snapshot kept as its newest common base.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: The replica dataset.
      type: str
    snapshot:
      description: The source snapshot it shares.
      type: str
actions:
  description: The plan, in order (bookmarks first, then one destroy per dataset).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    make_runner,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.prune import Options, prune


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            recursive=dict(type="bool", default=False),
            keep_last=dict(type="int"),
            hourly=dict(type="int"),
            daily=dict(type="int"),
            weekly=dict(type="int"),
            monthly=dict(type="int"),
            yearly=dict(type="int"),
            utc=dict(type="bool", default=False),
            match=dict(type="str", default="*"),
            bookmark_before_destroy=dict(type="bool", default=True),
            targets=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    with backend_errors(module):
        result = prune(make_runner(module), Options.from_params(module.params))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
