#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_verify
short_description: Prove that a ZFS dataset or replica tree can be decrypted, by loading its keys and reading it
version_added: 0.1.0
description:
  - "C(zpool scrub) checks block checksums, not encryption MACs, and a replica whose members
    were wrapped by another key shows no error until someone needs the data. Key-less checks
    (M(blindvault.storage.zfs_info)) cannot see hex to hex key changes. Only loading the key and
    reading proves a replica (safety rule R11): this module does exactly that."
  - Reads O(name) (and with O(recursive) its descendants) with one C(zfs list), plus one for
    encryption roots above O(name) and one for O(compare_files_with). Every refusal happens
    before anything is touched.
  - Loads the key of every encryption root involved whose key is not loaded (from O(keys),
    O(key), O(key_file), or else the root's own C(keylocation)), reads one snapshot of every
    dataset (O(snapshot), or each dataset's newest), then unmounts what it mounted and unloads
    the keys it loaded, also when something failed. Keys already loaded are used as they are
    and stay loaded.
  - "O(mode=stream) hashes a non-raw C(zfs send DATASET@SNAPSHOT): ZFS decrypts every block and
    checks its MAC on the way. O(mode=files) mounts the snapshot read-only in a private
    temporary directory and hashes every regular file; with O(compare_files_with), the source's
    snapshot of the same name is hashed too and the files are compared."
  - A dataset that cannot be read is reported with the tool's own words (RV(datasets[].error));
    the task fails when any dataset fails, unless O(fail_on_error=false).
author: blindvault.storage contributors (@blindvault)
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.PLATFORM
  - blindvault.storage.key_source
attributes:
  check_mode:
    support: full
    details:
      - "It only reads, so check mode verifies exactly as a normal run does: keys are loaded
        and snapshots mounted for the reading, then unloaded and unmounted again."
  diff_mode:
    support: none
options:
  name:
    description:
      - The dataset (filesystem or volume) to verify, typically a replica; with O(recursive),
        the whole tree below it.
      - Datasets without snapshots (a pool's root, containers) are skipped.
    type: str
    required: true
  keys:
    description:
      - Keys for trees with several encryption roots that have different keys, one item per
        root. A root without an item here uses O(key) or O(key_file), or else its C(keylocation).
      - Items may also name encryption roots of O(compare_files_with).
    type: list
    elements: dict
    suboptions:
      encryptionroot:
        description: The encryption root this key is for.
        type: str
        required: true
      key:
        description: Its key (passphrase or hex), on standard input only.
        type: str
      key_file:
        description: A file with its key.
        type: path
  recursive:
    description: Verify every dataset below O(name) too.
    type: bool
    default: true
  mode:
    description:
      - V(stream) reads every block through a non-raw C(zfs send), hashed (volumes included).
      - V(files) mounts each snapshot read-only in a private temporary directory and hashes every
        regular file (symlinks and special files are not read). Volumes are skipped.
    type: str
    choices: [stream, files]
    default: stream
  snapshot:
    description:
      - The short name of the snapshot to verify on every dataset (the part after C(@)).
      - Omitted, each dataset's newest snapshot is verified.
      - A dataset that has snapshots but not this one fails (the replica is behind).
    type: str
  compare_files_with:
    description:
      - With O(mode=files), the source dataset that O(name) replicates (same paths below both).
        The same-named snapshot of each source dataset is mounted and hashed too; files missing
        from the replica, extra in it or different are reported in RV(datasets[].mismatches) and
        fail the dataset.
      - Also adds the source comparison's key-less hazards to RV(hazards).
    type: str
  fail_on_error:
    description:
      - Fail the task when any dataset fails verification (the per-dataset results are returned
        all the same). With V(false), check RV(ok).
      - A key or mount that could not be restored fails the task in any case.
    type: bool
    default: true
notes:
  - A key given for a root whose key is already loaded is not checked; unload it first to
    prove that this key opens the replica.
  - "On ZFS 2.1.11, a member whose key was wrapped by another key than its loaded root's fails
    with C(dataset key must be loaded) when sent and C(Permission denied) when mounted, although
    its C(keystatus) reads C(available); RV(datasets[].hint) then says why."
  - Needs C(mount) and C(umount) (util-linux) for O(mode=files).
seealso:
  - module: blindvault.storage.zfs_info
  - module: blindvault.storage.zfs_replicate
"""

EXAMPLES = r"""
- name: Prove a carrier's replica decrypts with the site key (every block read)
  blindvault.storage.zfs_verify:
    name: carrier/siteA/vault
    key_file: /etc/blindvault/keys/vault.hex
  register: proof

- name: Compare the files of the last replicated snapshot with the source's
  blindvault.storage.zfs_verify:
    name: backup/tank/home
    mode: files
    snapshot: blindvault-2026-11-23
    compare_files_with: tank/home

- name: A tree with two encryption roots and different keys; report, do not fail
  blindvault.storage.zfs_verify:
    name: carrier/siteA
    keys:
      - encryptionroot: carrier/siteA/vault
        key_file: /etc/blindvault/keys/vault.hex
      - encryptionroot: carrier/siteA/mail
        key: "{{ mail_passphrase }}"
    fail_on_error: false
  register: proof

- name: Name what cannot be decrypted
  ansible.builtin.debug:
    msg: "{{ proof.datasets | selectattr('status', 'equalto', 'failed') | map(attribute='error') | list }}"
  when: not proof.ok
"""

RETURN = r"""
ok:
  description: Whether every dataset read was verified (none failed) and the previous state was restored.
  returned: always
  type: bool
mode:
  description: The O(mode) used.
  returned: always
  type: str
datasets:
  description: One result per dataset, in C(zfs list) order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The dataset.
      type: str
    type:
      description: V(filesystem) or V(volume).
      type: str
    snapshot:
      description: The short name of the snapshot verified (null when it has none).
      type: str
    encryptionroot:
      description: Its encryption root (null when unencrypted).
      type: str
    status:
      description: V(ok), V(failed) or V(skipped).
      type: str
    error:
      description: Why it failed or was skipped, in the tool's own words where a tool failed.
      type: str
    hint:
      description: What ZFS's words mean, when they are known to mislead (null otherwise).
      type: str
    bytes:
      description: Bytes read (the stream, or all files' contents).
      type: int
    sha256:
      description:
        - V(stream), the sha256 of the C(zfs send) stream. V(files), the sha256 of the
          C(sha256sum)-style listing (C(<sha256>  <path>) lines sorted by path) of its files.
      type: str
    seconds:
      description: Time spent reading it (and its source).
      type: float
    files:
      description: V(files), the number of regular files hashed.
      type: int
    mismatches:
      description:
        - With O(compare_files_with), files that differ from the source, each C({path, problem}),
          C(problem) being V(missing) (source only), V(extra) (replica only) or V(different).
        - At most 100 are listed; RV(datasets[].error) gives the count.
      type: list
      elements: dict
    compared_with:
      description: With O(compare_files_with), the source snapshot compared with.
      type: str
  sample:
    - {"name": "carrier/er", "type": "filesystem", "snapshot": "s1", "encryptionroot": "carrier/er",
       "status": "ok", "error": null, "hint": null, "bytes": 46888, "seconds": 1.1, "files": null,
       "sha256": "0c12ab6d7fceeb50fb192fdc43008ea970a89ae38be6b9e4c43cf30ac27d480f",
       "mismatches": null, "compared_with": null}
    - {"name": "carrier/er/child", "type": "filesystem", "snapshot": "s2", "encryptionroot": "carrier/er",
       "status": "failed", "error": "warning: cannot send 'carrier/er/child@s2': dataset key must be loaded",
       "hint": "the key of its encryption root carrier/er is loaded, yet this dataset cannot be decrypted with it",
       "bytes": null, "sha256": null, "seconds": 0.6, "files": null, "mismatches": null, "compared_with": null}
failed_datasets:
  description: The names of the datasets that failed.
  returned: always
  type: list
  elements: str
keys_loaded:
  description: Encryption roots whose keys were loaded for the reading and unloaded again.
  returned: always
  type: list
  elements: str
hazards:
  description:
    - Key-less hazards of the tree (as M(blindvault.storage.zfs_info) reports them), and with
      O(compare_files_with) those of the comparison with the source.
  returned: always
  type: list
  elements: dict
restore_errors:
  description: Mounts or key loads that could not be undone (the task then fails).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blindvault.storage.plugins.module_utils.module import (
    backend_errors,
    make_runner,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.verify import verify


def _failure_message(result):
    failed = [d for d in result["datasets"] if d["status"] == "failed"]
    read = [d for d in result["datasets"] if d["status"] != "skipped"]
    parts = []
    if failed:
        named = ["%s@%s: %s" % (d["name"], d["snapshot"], d["error"]) for d in failed]
        parts.append("%d of %d datasets failed verification: %s"
                     % (len(failed), len(read), "; ".join(named)))
    if result["restore_errors"]:
        parts.append("the previous state could not be fully restored: %s"
                     % "; ".join(result["restore_errors"]))
    return ". ".join(parts)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            key=dict(type="str", no_log=True),
            key_file=dict(type="path", no_log=False),
            keys=dict(type="list", elements="dict", no_log=False, options=dict(
                encryptionroot=dict(type="str", required=True),
                key=dict(type="str", no_log=True),
                key_file=dict(type="path", no_log=False),
            ), mutually_exclusive=[("key", "key_file")], required_one_of=[("key", "key_file")]),
            recursive=dict(type="bool", default=True),
            mode=dict(type="str", choices=["stream", "files"], default="stream"),
            snapshot=dict(type="str"),
            compare_files_with=dict(type="str"),
            fail_on_error=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("key", "key_file")],
        supports_check_mode=True,
    )
    with backend_errors(module):
        result = verify(make_runner(module), module.params)
    if result["restore_errors"] or (module.params["fail_on_error"] and not result["ok"]):
        module.fail_json(msg=_failure_message(result), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
