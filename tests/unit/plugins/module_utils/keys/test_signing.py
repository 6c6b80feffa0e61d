"""Signed manifests: keys as openssl writes them; altered, foreign and malformed envelopes refused."""

import json
import shutil
import subprocess

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.keys import signing

MANIFEST = {"group": "tank/vault", "files": [{"name": "00-tank%vault.zfs.age", "sha256": "ab" * 32, "bytes": 10}]}


def openssl_pair(tmp_path, name):
    """(private PEM, public PEM) written by openssl, as a user would make them."""
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    priv, pub = tmp_path / (name + ".pem"), tmp_path / (name + ".pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(priv)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout", "-out", str(pub)], check=True)
    return priv.read_bytes(), pub.read_bytes()


def test_signed_by_a_trusted_key_survives_reserialisation(tmp_path):
    priv, pub = openssl_pair(tmp_path, "site-a")
    other_pub = openssl_pair(tmp_path, "site-c")[1]
    key = signing.load_private_key(priv)
    env = signing.sign(MANIFEST, key)
    assert env["signer"] == signing.fingerprint(key.public_key())
    again = json.loads(json.dumps(env, indent=2))
    trusted = [signing.load_public_key(other_pub), signing.load_public_key(pub)]
    assert signing.verify(again, trusted) == MANIFEST


def test_altered_or_foreign_manifests_are_refused(tmp_path):
    priv, pub = openssl_pair(tmp_path, "site-a")
    other_pub = openssl_pair(tmp_path, "site-c")[1]
    env = signing.sign(MANIFEST, signing.load_private_key(priv))
    trusted = [signing.load_public_key(pub)]

    altered = json.loads(json.dumps(env))
    altered["manifest"]["files"][0]["bytes"] = 11
    with pytest.raises(signing.SignatureError, match="not signed by a trusted signer"):
        signing.verify(altered, trusted)
    with pytest.raises(signing.SignatureError, match="claims ed25519:"):
        signing.verify(env, [signing.load_public_key(other_pub)])
    with pytest.raises(signing.SignatureError, match="no trusted signer"):
        signing.verify(env, [])
    for bad in ({}, {"format": signing.FORMAT}, dict(env, signature="***"), [env]):
        with pytest.raises(signing.SignatureError):
            signing.verify(bad, trusted)


def test_wrong_key_kinds_get_clear_errors(tmp_path):
    priv, pub = openssl_pair(tmp_path, "site-a")
    with pytest.raises(signing.SignatureError, match="not an unencrypted PEM private key"):
        signing.load_private_key(pub)
    with pytest.raises(signing.SignatureError, match="not a PEM public key"):
        signing.load_public_key(b"garbage")
    rsa = tmp_path / "rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024",
                    "-out", str(rsa)], check=True, capture_output=True)
    with pytest.raises(signing.SignatureError, match="not an Ed25519 key"):
        signing.load_private_key(rsa.read_bytes())
