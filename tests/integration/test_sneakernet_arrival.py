"""Faults at arrival, through the sneakernet role as a playbook runs it.

The key file this site should hold is missing when the carrier arrives: the carrier's trees
are received all the same (blind: no key is needed for that), then verification fails the run
loudly, naming the file, before anything destructive (the carrier's older trip is not pruned).
With the key file in place, the trip verifies and the replica decrypts byte-equal.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

from helpers import sh
from test_zfs_replicate import files_of, put, read_back, snapshots
from zfs_scenarios import destroy_pool, key_opts, make_pool, new_key


@pytest.fixture
def sites():
    root = tempfile.mkdtemp(prefix="bvarr-", dir="/tmp")
    names = {"a": make_pool(root, "bvara", "192M"), "carrier": make_pool(root, "bvarc", "192M"),
             "b": make_pool(root, "bvarb", "192M")}
    try:
        yield dict(names, root=root)
    finally:
        for n in names.values():
            destroy_pool(n)
        shutil.rmtree(root, ignore_errors=True)


def arrive(sites, key_file):
    env = dict(os.environ, BV_CARRIER=sites["carrier"], BV_CARRIER_DIR=sites["root"],
               BV_SITE_B=sites["b"], BV_KEY_FILE=key_file)
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local",
         os.path.join(os.environ["BV_TOP"], "tests/integration/playbooks/arrival.yml")],
        env=env, text=True, capture_output=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_key_file_missing_at_arrival_fails_loudly_before_pruning_then_verifies(module, sites):
    a, c, b = sites["a"] + "/vault", sites["carrier"] + "/vault", sites["b"] + "/vault"
    key = new_key(sites["root"], "vault.hex", "hex")
    sh("zfs", "create", "-o", "encryption=aes-256-gcm", *key_opts("hex", key), a)
    sh("zfs", "create", a + "/docs")
    put(a, "root.bin")
    put(a + "/docs", "d1.bin")
    # site A departed twice: two trips on the carrier
    for trip in ("trip-1", "trip-2"):
        put(a + "/docs", trip + ".bin")
        res = module("zfs_replicate", {"source": a, "target": c, "snapshot": trip})
        assert not res.failed, res.get("msg")
    carrier_snaps = snapshots(c)
    site_b_key = os.path.join(sites["root"], "site-b", "vault.hex")  # not deployed yet

    rc, out = arrive(sites, site_b_key)
    assert rc != 0, out[-3000:]
    assert site_b_key in out and "does not exist" in out, out[-3000:]
    assert "Traceback" not in out
    assert snapshots(c) == carrier_snaps  # nothing pruned: verification never passed
    assert b + "/docs@trip-2" in snapshots(b)  # received blind, as a carrier would be
    assert sh("zfs", "get", "-H", "-o", "value", "keystatus", b).stdout.strip() == "unavailable"

    # the key file deployed, what the rerun's verification does proves the arrival: every block
    # of the trip read with the key (the role's own rerun costs minutes in the lab; the role's
    # success path is its Molecule scenario's)
    os.makedirs(os.path.dirname(site_b_key), mode=0o700)
    shutil.copy(key, site_b_key)
    os.chmod(site_b_key, 0o600)
    proof = module("zfs_verify", {"name": b, "keys": [{"encryptionroot": b, "key_file": site_b_key}],
                                  "snapshot": "trip-2"})
    assert not proof.failed and proof["ok"], proof
    assert read_back(b, site_b_key) == files_of(a)
