# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ed25519-signed manifests: who wrote a set of files, and what exactly they wrote.

age authenticates nothing about the sender (anyone holding a recipient's public key can
encrypt to it), so a stream package carries a manifest signed with the sending site's
Ed25519 key (PEM, as ``openssl genpkey -algorithm ed25519`` writes it), and the receiving
side accepts it only from ``trusted_signers`` (PEM public keys).

The signed bytes are the manifest's canonical JSON (sorted keys, no spaces, UTF-8), so the
envelope can be pretty-printed or re-serialised without breaking the signature.
"""

from __future__ import annotations

import base64
import hashlib
import json

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
        load_pem_public_key,
    )
    HAS_CRYPTOGRAPHY = True
except ImportError:  # reported by the module with missing_required_lib
    HAS_CRYPTOGRAPHY = False

FORMAT = "blindvault-signed-manifest/1"


class SignatureError(ValueError):
    """A manifest that must not be trusted: unsigned, altered, or signed by an unknown key."""


def canonical(manifest):
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def fingerprint(public_key):
    """``ed25519:`` and the first 32 hex digits of the sha256 of the raw public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def load_private_key(pem, source="the signing key"):
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise SignatureError("%s is not an unencrypted PEM private key (%s)" % (source, type(e).__name__)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError("%s is not an Ed25519 key (openssl genpkey -algorithm ed25519)" % source)
    return key


def load_public_key(pem, source="a trusted signer"):
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise SignatureError("%s is not a PEM public key (%s)" % (source, type(e).__name__)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("%s is not an Ed25519 public key" % source)
    return key


def sign(manifest, private_key):
    """The envelope (a dict, JSON-ready) holding ``manifest`` and its signature."""
    return {
        "format": FORMAT,
        "signer": fingerprint(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(canonical(manifest))).decode("ascii"),
        "manifest": manifest,
    }


def verify(envelope, trusted):
    """``envelope``'s manifest if one of ``trusted`` (public keys) signed exactly it."""
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise SignatureError("not a signed manifest (format %s expected)" % FORMAT)
    manifest, signature = envelope.get("manifest"), envelope.get("signature")
    if not isinstance(manifest, dict) or not isinstance(signature, str):
        raise SignatureError("the signed manifest has no manifest or no signature")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        raise SignatureError("the manifest's signature is not base64") from None
    if not trusted:
        raise SignatureError("no trusted signer is configured")
    try:
        body = canonical(manifest)
    except (UnicodeError, ValueError, RecursionError):
        raise SignatureError("the manifest cannot be put in canonical form (not plain JSON text)") from None
    for key in trusted:
        try:
            key.verify(raw, body)
            return manifest
        except InvalidSignature:
            continue
    raise SignatureError(
        "the manifest is not signed by a trusted signer (it claims %s; trusted: %s), or it was altered"
        % (envelope.get("signer", "nobody"), ", ".join(fingerprint(k) for k in trusted)))
