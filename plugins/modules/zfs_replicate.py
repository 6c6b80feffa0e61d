#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_replicate
short_description: Replicate ZFS datasets raw (blind), keeping encryption groups whole
version_added: 0.1.0
description:
  - Replicates O(source) (a tree) to O(target) on a pool attached to this host, a site pool or a
    sneakernet carrier. Encrypted datasets travel raw (C(zfs send -w)), so the target never needs
    a key.
  - "The unit is an encryption group: an encryption root and every dataset whose C(encryptionroot)
    it is. After C(zfs change-key), a group sent in part leaves replicas whose members cannot be
    decrypted, and nothing errors at send time. So every run sends the root first and then its
    whole group, from one atomic recursive snapshot (safety rule R1). A O(source) inside a group is
    widened to the group's root and O(target) to the root's replica, or refused when that replica
    cannot be named. O(recursive=false) on an encryption root is refused."
  - On an original source, one atomic snapshot (O(snapshot)) is taken of the whole tree. On a
    source that is itself a replica (a carrier relaying to another site, marked by
    C(blindvault:replica-of)) no snapshot is taken; the newest snapshot all its datasets share is
    sent (R2). A relay with nothing new reports C(changed=false).
  - Seeds and new members go as C(zfs send -R) streams from their encryption root so the target
    keeps the hierarchy; a group with a new member goes as one C(-R -I) stream; other members go
    one incremental each, their base found by guid. The base must be the target's newest
    snapshot; anything newer is only destroyed with O(force_rollback=true) (R3, R4).
  - Receives are unmounted (C(-u)), resumable (C(-s)), do not take mountpoints from the source,
    set C(readonly=on) (O(replica_readonly)), mark the replica (C(blindvault:replica-of)) and
    record the key generation (C(blindvault:key-id)) in the receive itself (R8).
  - After the send, each sent snapshot is bookmarked on the source (O(bookmark)) and held on both
    sides (O(hold), tags C(blindvault:<other side>)); the previous common base is released.
  - A group whose receive fails stops there (nothing more of it is sent); other groups go on; the
    task fails at the end naming what failed (R5). Replicas of datasets that no longer exist at the
    source (orphans) are reported, and block their group unless O(allow_orphans=true) (R6).
  - Streams go from one C(zfs) process to the other through an OS pipe; no temporary files.
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_ONLY
  - blindvault.storage.attributes.PLATFORM
options:
  source:
    description: The dataset (tree) to replicate. Inside an encryption group it stands for the whole group.
    type: str
    required: true
  target:
    description:
      - The dataset that is (or becomes) the replica of O(source), on a pool imported on this host.
      - Its parent must exist. It must not be a pool's root dataset.
    type: str
    required: true
  recursive:
    description:
      - Replicate the descendants too. V(false) is refused for an encryption root (R1).
    type: bool
    default: true
  include:
    description:
      - Shell patterns; only encryption groups whose root matches one (by full name or by name
        relative to O(source)) are sent. Unencrypted datasets are their own group.
      - Whole groups only; a C(-R) stream that would carry an excluded group is refused (R7).
    type: list
    elements: str
    default: []
  exclude:
    description: Shell patterns of encryption groups left out (see O(include)).
    type: list
    elements: str
    default: []
  snapshot:
    description:
      - Name format (C(strftime) fields, UTC) of the atomic recursive snapshot taken on an original
        source, e.g. C(nightly-%Y%m%d). A rendered name that already exists is reused, so a format
        without time fields makes reruns idempotent.
      - Defaults to C(blindvault-%Y%m%d-%H%M%S) (a new snapshot every run). Never taken on a replica.
    type: str
  raw:
    description:
      - V(auto) sends encrypted datasets raw and unencrypted ones non-raw (an unencrypted dataset
        received into an encrypted parent is then encrypted there, R9).
      - V(false) on an encrypted source is refused unless O(decrypt=true).
    type: raw
    default: auto
  decrypt:
    description:
      - Allow O(raw=false) on encrypted datasets, the recovery path of re-sending decrypted under
        the target's encryption root. Needs the source's keys loaded.
    type: bool
    default: false
  hold:
    description: Hold the newest common snapshot on both sides and release the previous one.
    type: bool
    default: true
  bookmark:
    description: Bookmark each sent snapshot on the source (C(dataset#snapshot)), an incremental base that survives pruning.
    type: bool
    default: true
  resume:
    description:
      - Receive with C(-s) and finish interrupted receives from their C(receive_resume_token) before
        anything else. V(false) aborts them (C(zfs recv -A)) instead.
    type: bool
    default: true
  force_rollback:
    description:
      - Let C(zfs recv -F) destroy target snapshots newer than the common base (and changes made
        since). Check mode lists each one (C(destroys) in RV(datasets)).
    type: bool
    default: false
  allow_orphans:
    description: Update a group whose replica has members that no longer exist at the source.
    type: bool
    default: false
  replica_readonly:
    description: Set C(readonly=on) on received datasets.
    type: bool
    default: true
  properties:
    description: Properties set on receive (C(zfs recv -o)), e.g. C(canmount=noauto).
    type: dict
    default: {}
  progress_file:
    description: A file that receives C(zfs send -vP) progress lines (appended, one header per stream).
    type: path
  target_key_file:
    description:
      - The key file of the target's encryption root (a carrier's root, say), for unencrypted
        datasets sent into an encrypted target - encrypted on receive there (R9, encrypt on the
        way). Such a non-raw receive needs that key loaded at this site; with this option it is
        proven first (C(zfs load-key -n), check mode too), loaded for the run's non-raw receives
        only and unloaded after them (RV(target_key_loaded)). A key that was loaded already is
        left as it was.
      - Later hops (carrier to the next site) go raw and need no key.
    type: path
notes:
  - Check mode reads both trees and returns the plan per dataset (RV(datasets)) and per stream
    (RV(streams)), with sizes from C(zfs send -nvP) when the snapshot exists, else from the
    C(written)/C(referenced) properties.
  - The task fails when any group was refused or failed; the plan and what was done are returned.
seealso:
  - module: blindvault.storage.zfs_key
  - module: blindvault.storage.zfs_info
"""

EXAMPLES = r"""
- name: Site A to the carrier pool (a new atomic snapshot of the whole tree)
  blindvault.storage.zfs_replicate:
    source: tank/vault
    target: carrier/site-a/vault
    progress_file: /var/log/blindvault-send.log

- name: Carrier to site B (a relay - no snapshot is taken on the carrier)
  blindvault.storage.zfs_replicate:
    source: carrier/site-a/vault
    target: backup/site-a/vault

- name: Only some encryption groups, daily snapshot names (reruns on the same day change nothing)
  blindvault.storage.zfs_replicate:
    source: tank
    target: carrier/tank
    include: ["tank/vault*"]
    exclude: ["tank/vault-scratch"]
    snapshot: "daily-%Y%m%d"

- name: An unencrypted site's data, encrypted on the way under the carrier's root (key loaded for the receive only)
  blindvault.storage.zfs_replicate:
    source: plain/projects
    target: carrier/site-c/projects
    target_key_file: /etc/blindvault/carrier.key

- name: What would happen?
  blindvault.storage.zfs_replicate:
    source: tank/vault
    target: carrier/site-a/vault
  check_mode: true
  register: plan
"""

RETURN = r"""
target_key_loaded:
  description: The encryption root whose key O(target_key_file) loaded for this run's non-raw receives (and unloaded after).
  returned: when it was loaded
  type: str
source:
  description: The source tree actually replicated (an encryption group's root when O(source) is a member).
  returned: always
  type: str
target:
  description: Its replica.
  returned: always
  type: str
snapshot:
  description: The snapshot (short name) sent up to.
  returned: always
  type: str
snapshot_taken:
  description: Whether this run took that snapshot.
  returned: always
  type: bool
source_is_replica:
  description: The source is itself a replica (no snapshot taken, R2).
  returned: always
  type: bool
datasets:
  description:
    - Per source dataset C(source), C(target), C(group) (its encryption root), C(action)
      (V(full), V(incremental), V(up to date), V(refused), V(failed), V(skipped)), C(base),
      C(snapshot), C(reason), and C(destroys) when O(force_rollback) would destroy target snapshots.
  returned: always
  type: list
  elements: dict
streams:
  description: Each C(zfs send | zfs recv) pipe with C(command), C(kind), C(datasets), C(bytes_estimated), C(status), C(error), C(seconds).
  returned: always
  type: list
  elements: dict
refused:
  description: Encryption group to the reason nothing of it was sent.
  returned: always
  type: dict
failed:
  description: Encryption group to the error that stopped it.
  returned: always
  type: dict
resumed:
  description: Targets whose interrupted receive was resumed first.
  returned: always
  type: list
  elements: str
hazards:
  description: Key-less hazards of the target afterwards (see M(blindvault.storage.zfs_info)), plus C(orphan) entries.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    make_runner,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.replication import (
    Options,
    replicate,
)

ARGUMENT_SPEC = dict(
    source=dict(type="str", required=True),
    target=dict(type="str", required=True),
    recursive=dict(type="bool", default=True),
    include=dict(type="list", elements="str", default=[]),
    exclude=dict(type="list", elements="str", default=[]),
    snapshot=dict(type="str"),
    raw=dict(type="raw", default="auto"),
    decrypt=dict(type="bool", default=False),
    hold=dict(type="bool", default=True),
    bookmark=dict(type="bool", default=True),
    resume=dict(type="bool", default=True),
    force_rollback=dict(type="bool", default=False),
    allow_orphans=dict(type="bool", default=False),
    replica_readonly=dict(type="bool", default=True),
    properties=dict(type="dict", default={}),
    progress_file=dict(type="path"),
    target_key_file=dict(type="path", no_log=False),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    opts = Options(**{k: module.params[k] for k in ARGUMENT_SPEC})
    opts.properties = {k: str(v) for k, v in (opts.properties or {}).items()}
    with backend_errors(module):
        result = replicate(make_runner(module), opts)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    problems = ["%s refused: %s" % kv for kv in sorted(result["refused"].items())]
    problems += ["%s failed: %s" % kv for kv in sorted(result["failed"].items())]
    if problems:
        module.fail_json(msg="; ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
