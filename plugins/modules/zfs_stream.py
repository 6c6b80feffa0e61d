#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: zfs_stream
short_description: Carry an encryption group as signed, age-encrypted stream files
version_added: 0.1.0
description:
  - The second sneakernet topology - the carrier needs no ZFS, any filesystem will do (ext4 on a
    LUKS2 volume, for instance). O(state=exported) writes the raw send streams of O(dataset)'s
    encryption group into O(directory) as a B(package) - one file per stream in the age format,
    encrypted to X25519 O(recipients) (public keys only), plus C(manifest.json) naming every file
    with its size and sha256, the datasets and the base and snapshot guids, signed with the sending
    site's Ed25519 O(signing_key). O(state=imported) receives the packages of O(dataset)'s group
    found in O(directory) into O(target).
  - "Streams obey the rules of live replication: they are planned by M(blindvault.storage.zfs_replicate)'s
    own planner, so the unit is a whole encryption group, root first, from one atomic snapshot
    (safety rules R1, R2). A O(dataset) inside a group stands for the whole group."
  - The package is full, or incremental from what earlier packages for O(target_id) carried,
    recorded on the source by bookmarks C(DATASET#bvs.<target_id>.<snapshot>) made once a package
    is complete. A package is written under a temporary name and renamed when complete, so a torn
    one is never imported.
  - "Import checks, before any byte reaches C(zfs recv): every manifest's signature against
    O(trusted_signers) (age authenticates no sender: anyone holding a public recipient key could
    forge a stream), every file's size and sha256, and the chain (each incremental's base must be
    the target's newest snapshot, by guid), and that O(identity_file) opens each file's age
    header, which the manifest signs too (it fixes the payload key, so every chunk received is one
    the sender wrote). A package the target already has (by guid) is skipped, so a second run
    changes nothing."
  - No plaintext touches a disk; every file decrypts with C(age -d -i IDENTITY) too.
  - Receives are unmounted, C(readonly=on), marked C(blindvault:replica-of), and do not take
    mountpoints from the source, as with M(blindvault.storage.zfs_replicate).
author: blindvault.storage contributors (@blindvault)
requirements:
  - cryptography (Python) on the managed host
extends_documentation_fragment:
  - blindvault.storage.attributes
  - blindvault.storage.attributes.CHECK_ONLY
  - blindvault.storage.attributes.PLATFORM
options:
  state:
    description:
      - V(exported) writes a package that brings O(target_id) up to date. When every dataset of
        the group travelled at its newest snapshot and nothing was written since, no snapshot is
        taken and nothing is written (C(changed=false)).
      - V(imported) receives every pending package of O(dataset)'s group into O(target).
    type: str
    choices: [exported, imported]
    required: true
  dataset:
    description:
      - V(exported) - the dataset to export; inside an encryption group it stands for the group's root.
      - V(imported) - the group's root as the sending site names it (the packages' C(group)).
    type: str
    required: true
  directory:
    description: The directory holding packages (on the carrier). It must exist.
    type: path
    required: true
  target_id:
    description:
      - The receiving site's name (letters, digits, C(_) and C(-)); names the package and the
        bookmarks that record what it was sent. Required with O(state=exported).
    type: str
  snapshot:
    description:
      - O(state=exported) - the snapshot to send up to, an existing one or a C(strftime) format
        for a new one (default C(blindvault-%Y%m%d-%H%M%S), taken atomically over the group).
    type: str
  recipients:
    description: The age X25519 public keys (C(age1...)) the files are encrypted to. Required with O(state=exported).
    type: list
    elements: str
  signing_key:
    description:
      - Path to the sending site's Ed25519 private key in PEM (C(openssl genpkey -algorithm ed25519)).
        Required with O(state=exported).
    type: path
  target:
    description: O(state=imported) - the replica of the group's root (its parent must exist).
    type: str
  trusted_signers:
    description: O(state=imported) - paths to the Ed25519 public keys (PEM) whose packages are accepted.
    type: list
    elements: path
  identity_file:
    description: O(state=imported) - an age identity file (C(age-keygen) output) able to decrypt the packages.
    type: path
  allow_unsigned:
    description:
      - O(state=imported) - also import unsigned streams, age files directly in O(directory) made
        with C(zfs send -w -R ROOT@SNAP | age -r RECIPIENT) (full) or C(zfs send -w -R -I @BASE
        ROOT@SNAP | age -r RECIPIENT) (incremental), no manifest.
      - What they carry is read from the stream's own BEGIN records (group, snapshot and base
        guids); only a C(-R) stream of the whole group is accepted - a stream of a member, or of
        the root without C(-R), is refused (R1). Each file is decrypted once in full (every age
        chunk authenticated) before any byte reaches C(zfs recv), and the receive insists on the
        bytes checked.
      - age proves no sender, so anyone holding the recipient's public key could write such a
        file; a warning says so. With this option O(trusted_signers) may be empty.
    type: bool
    default: false
notes:
  - The sending site needs no key of the datasets (streams are raw); the receiving site needs only
    the age identity, not the datasets' keys.
  - Unsigned streams (C(zfs send | age -r) without a manifest) are imported only with
    O(allow_unsigned=true).
seealso:
  - module: blindvault.storage.zfs_replicate
  - module: blindvault.storage.encryption_key
"""

EXAMPLES = r"""
- name: Site A - write what site B lacks onto the carrier's filesystem
  blindvault.storage.zfs_stream:
    state: exported
    dataset: tank/vault
    target_id: site-b
    directory: /mnt/carrier/streams
    recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
    signing_key: /etc/blindvault/site-a.ed25519.pem

- name: Site B - receive every package of the group, checked first
  blindvault.storage.zfs_stream:
    state: imported
    dataset: tank/vault
    target: backup/site-a/vault
    directory: /mnt/carrier/streams
    trusted_signers: [/etc/blindvault/site-a.ed25519.pub.pem]
    identity_file: /etc/blindvault/site-b.age

- name: Site B - a stream an admin made by hand (zfs send -w -R tank/vault@t1 | age -r ...)
  blindvault.storage.zfs_stream:
    state: imported
    dataset: tank/vault
    target: backup/site-a/vault
    directory: /mnt/carrier/by-hand
    identity_file: /etc/blindvault/site-b.age
    allow_unsigned: true
"""

RETURN = r"""
dataset:
  description: The group's root.
  returned: always
  type: str
snapshot:
  description: The snapshot (short name) the package sends up to.
  returned: O(state=exported)
  type: str
snapshot_taken:
  description: Whether this run took that snapshot.
  returned: O(state=exported)
  type: bool
package:
  description: The package directory written (or that would be); null when O(target_id) is up to date.
  returned: O(state=exported)
  type: str
datasets:
  description: The planner's decision per dataset (C(source), C(group), C(action), C(base), C(reason)).
  returned: O(state=exported)
  type: list
  elements: dict
streams:
  description: Each stream file with C(file), C(kind), C(datasets), C(command); after writing also C(bytes), C(sha256), C(stream_bytes).
  returned: O(state=exported)
  type: list
  elements: dict
packages:
  description:
    - O(state=imported) - the packages received (or that would be), in order, with C(package)
      (its directory, or the unsigned file), C(snapshot), C(created), C(signed) and their
      streams' C(file), C(kind), C(datasets) and C(command).
  returned: O(state=imported)
  type: list
  elements: dict
skipped:
  description: O(state=imported) - packages the target already had.
  returned: O(state=imported)
  type: list
  elements: str
target:
  description: The replica of the group's root.
  returned: O(state=imported)
  type: str
hazards:
  description: Key-less hazards of the target tree after the import (empty when sound).
  returned: O(state=imported)
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.blindvault.storage.plugins.module_utils.keys import signing
from ansible_collections.blindvault.storage.plugins.module_utils.module import backend_errors, make_runner
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.stream import (
    ExportOptions,
    ImportOptions,
    export,
    import_,
)

ARGUMENT_SPEC = dict(
    state=dict(type="str", required=True, choices=["exported", "imported"]),
    dataset=dict(type="str", required=True),
    directory=dict(type="path", required=True),
    target_id=dict(type="str"),
    snapshot=dict(type="str"),
    recipients=dict(type="list", elements="str"),
    signing_key=dict(type="path", no_log=False),
    target=dict(type="str"),
    trusted_signers=dict(type="list", elements="path"),
    identity_file=dict(type="path"),
    allow_unsigned=dict(type="bool", default=False),
)
EXPORT_ONLY = ("target_id", "snapshot", "recipients", "signing_key")
IMPORT_ONLY = ("target", "trusted_signers", "identity_file")


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "exported", ("target_id", "recipients", "signing_key")),
                     ("state", "imported", ("target", "identity_file"))],
        supports_check_mode=True,
    )
    if not signing.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"))
    p = module.params
    other = IMPORT_ONLY if p["state"] == "exported" else EXPORT_ONLY
    stray = [k for k in other if p[k] is not None]
    if p["allow_unsigned"] and p["state"] == "exported":
        stray.append("allow_unsigned")
    if p["state"] == "imported" and not p["trusted_signers"] and not p["allow_unsigned"]:
        module.fail_json(msg="state=imported needs trusted_signers (the sending sites' Ed25519 public "
                             "keys), or allow_unsigned=true for streams made with zfs send -R | age -r")
    if stray:
        module.fail_json(msg="%s: only with state=%s" % (
            ", ".join(stray), "imported" if p["state"] == "exported" else "exported"))
    with backend_errors(module):
        if p["state"] == "exported":
            result = export(make_runner(module), ExportOptions(**{k: p[k] for k in ("dataset", "directory") + EXPORT_ONLY}))
        else:
            result = import_(make_runner(module), ImportOptions(
                allow_unsigned=p["allow_unsigned"], **{k: p[k] for k in ("dataset", "directory") + IMPORT_ONLY}))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
