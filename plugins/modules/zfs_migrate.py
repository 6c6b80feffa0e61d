#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_migrate
short_description: Move unencrypted ZFS datasets under an encryption root - copy, prove, then switch
version_added: 0.1.0
description:
  - Migrates a site's unencrypted O(datasets) (each with its descendants) into the existing
    encryption root O(root), each to C(ROOT/<its last name>). The role C(blindvault.storage.encrypt_migration) wraps it with
    the key and the root.
  - "Every run: B(copy) - each dataset is replicated non-raw into O(root) at one atomic snapshot
    and encrypted there on receive (M(blindvault.storage.zfs_replicate), R9; the key is loaded for
    the receive and unloaded after); B(verify) - every dataset of the copy is read with the key
    and its files compared with the original's at the same snapshot. A rerun reuses the
    snapshot and changes nothing."
  - "Only with O(finalize=true), and only after the verification passed in the same run: a final
    snapshot (O(final_snapshot)) brings each copy up to date and is verified again; then the
    switch - the original gives up its mountpoint (refused while it is busy, before anything
    else changed), the copy stops being a replica (no C(readonly), no C(blindvault:replica-of)),
    takes that mountpoint and is mounted, and is marked C(blindvault:migrated-from); then the
    original is destroyed with its snapshots and bookmarks. The key stays loaded."
  - "Nothing is taken over or destroyed unless every dataset of the original, once unmounted,
    has nothing written since the final snapshot, and the copy holds that snapshot (by guid); a
    dataset created or recreated under the original after the copy is refused too. The refusal
    says to stop the writers and run finalize again (a new final snapshot carries the rest)."
  - Descendants that are volumes or encrypted are refused before anything happens (files are
    compared; only unencrypted data is migrated).
  - State is read each run, so an interrupted run continues where it stopped; a second run after
    a finished migration changes nothing.
  - Only unencrypted filesystems are taken; an encrypted dataset is refused (a local non-raw copy
    gets new master keys, and raw incrementals to its existing replicas would then fail).
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_ONLY
  - blindvault.storage.attributes.PLATFORM
options:
  datasets:
    description:
      - The unencrypted filesystems to migrate, each with its descendants. Their last names must
        differ (each becomes C(ROOT/<last name>)) and none may lie inside another.
    type: list
    elements: str
    required: true
  root:
    description: The encryption root that receives them (it must exist, e.g. made by M(blindvault.storage.zfs_dataset)).
    type: str
    required: true
  key_file:
    description: The key file of O(root); proven with C(zfs load-key -n) before anything happens.
    type: path
    required: true
  snapshot:
    description: Short name of the snapshot the copy is made at (taken atomically per dataset tree, reused by reruns).
    type: str
    default: blindvault-migrate
  final_snapshot:
    description:
      - Name format (C(strftime) fields, UTC) of the snapshot each O(finalize=true) run takes to
        bring the copies up to date. A new one every run, so a rerun after a refused switch
        carries everything written before it.
    type: str
    default: blindvault-migrate-final-%Y%m%d%H%M%S
  finalize:
    description:
      - Switch over and destroy the originals after the copies are verified (the only
        destructive step, and the last). Stop the services writing to the datasets first - a file
        written after the final snapshot is lost with the original.
    type: bool
    default: false
notes:
  - Destroying the originals destroys their snapshots and bookmarks, so a replica of an original
    elsewhere (a carrier) shares nothing with the new encrypted datasets. Their next trip is a full
    send of the new group, root first; keep the carrier's old copy until it has arrived.
  - A mountpoint of V(legacy) or V(none) is carried over as it is (update C(/etc/fstab) for legacy).
  - Check mode reads everything and returns each dataset's plan, including the switch and destroy
    commands a finalize would run.
seealso:
  - module: blindvault.storage.zfs_replicate
  - module: blindvault.storage.zfs_verify
"""

EXAMPLES = r"""
- name: Copy and prove (nothing destroyed)
  blindvault.storage.zfs_migrate:
    datasets: [tank/home, tank/projects, tank/media]
    root: tank/encrypted
    key_file: /etc/blindvault/keys/tank-encrypted.hex

- name: Later, services stopped - bring the copies up to date, switch and destroy the originals
  blindvault.storage.zfs_migrate:
    datasets: [tank/home, tank/projects, tank/media]
    root: tank/encrypted
    key_file: /etc/blindvault/keys/tank-encrypted.hex
    finalize: true
"""

RETURN = r"""
root:
  description: The encryption root.
  returned: always
  type: str
snapshot:
  description: The snapshot this run copied and verified at.
  returned: always
  type: str
finalize:
  description: Whether this run was a finalize.
  returned: always
  type: bool
key_loaded:
  description: The finalize loaded the root's key (it stays loaded; the datasets are mounted).
  returned: when it did
  type: bool
datasets:
  description:
    - Per dataset C(source), C(target), C(action) (V(copy), V(update), V(destroy), V(done), or
      V(migrated) once a finalize finished it), C(reason), C(mountpoint), C(copy) (the
      replication's C(changed), C(snapshot_taken), C(streams)), C(verified) (C(datasets),
      C(files), C(bytes), C(snapshot); null when check mode had nothing to read yet) and
      C(finalize) (the switch and destroy commands run, or that would run).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.module import backend_errors, make_runner
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.migrate import MigrateOptions, migrate

ARGUMENT_SPEC = dict(
    datasets=dict(type="list", elements="str", required=True),
    root=dict(type="str", required=True),
    key_file=dict(type="path", required=True, no_log=False),
    snapshot=dict(type="str", default="blindvault-migrate"),
    final_snapshot=dict(type="str", default="blindvault-migrate-final-%Y%m%d%H%M%S"),
    finalize=dict(type="bool", default=False),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    with backend_errors(module):
        result = migrate(make_runner(module), MigrateOptions(**module.params))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
