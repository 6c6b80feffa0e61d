# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Encrypt to age X25519 recipients (age-encryption.org/v1) with the ``cryptography`` package.

Only encryption is here: escrowed key material is recovered with the standard ``age -d``
by whoever holds the identity, so no decryption code needs to ship to managed hosts.
The format: https://age-encryption.org/v1 (header with one X25519 stanza per recipient,
HMAC over the header, then a ChaCha20-Poly1305 STREAM payload in 64 KiB chunks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    HAS_CRYPTOGRAPHY = True
except ImportError:  # reported by the module with missing_required_lib
    HAS_CRYPTOGRAPHY = False

CHUNK = 64 * 1024
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class RecipientError(ValueError):
    pass


def _bech32_polymod(values):
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def parse_recipient(text):
    """``age1...`` (Bech32, HRP ``age``) -> the 32-byte X25519 public key."""
    s = text.strip()
    if not s.lower().startswith("age1"):
        raise RecipientError("%r is not an age X25519 recipient (age1...)" % text)
    if s.lower() != s and s.upper() != s:
        raise RecipientError("mixed case in age recipient %r" % text)
    s = s.lower()
    hrp, sep, data = s.rpartition("1")
    if not sep or hrp != "age" or len(data) < 6:
        raise RecipientError("%r is not an age X25519 recipient (age1...)" % text)
    try:
        values = [_CHARSET.index(c) for c in data]
    except ValueError:
        raise RecipientError("%r has characters outside Bech32" % text) from None
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    if _bech32_polymod(expanded + values) != 1:
        raise RecipientError("%r: bad Bech32 checksum (a typo?)" % text)
    acc = bits = 0
    out = bytearray()
    for v in values[:-6]:
        acc = (acc << 5) | v
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        raise RecipientError("%r: bad Bech32 padding" % text)
    if len(out) != 32:
        raise RecipientError("%r does not hold a 32-byte X25519 key" % text)
    return bytes(out)


def _b64(data):
    return base64.b64encode(data).rstrip(b"=")


def _hkdf(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _stanza(file_key, recipient):
    eph = X25519PrivateKey.generate()
    share = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient))
    if shared == bytes(32):
        raise RecipientError("recipient is a low-order point")
    wrap = _hkdf(shared, share + recipient, b"age-encryption.org/v1/X25519")
    body = _b64(ChaCha20Poly1305(wrap).encrypt(bytes(12), file_key, None))
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")  # the body always ends with a line shorter than 64 columns
    return b"-> X25519 " + _b64(share) + b"\n" + b"\n".join(lines) + b"\n"


def encrypt(plaintext, recipients):
    """``plaintext`` (bytes) encrypted to every ``age1...`` recipient, as an age file's bytes."""
    keys = [parse_recipient(r) for r in recipients]
    if not keys:
        raise RecipientError("at least one recipient is needed")
    file_key = os.urandom(16)
    header = b"age-encryption.org/v1\n" + b"".join(_stanza(file_key, k) for k in keys) + b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
    nonce = os.urandom(16)
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    chunks = [plaintext[i:i + CHUNK] for i in range(0, len(plaintext), CHUNK)] or [b""]
    payload = b"".join(
        aead.encrypt(i.to_bytes(11, "big") + (b"\x01" if i == len(chunks) - 1 else b"\x00"),
                     chunk, None)
        for i, chunk in enumerate(chunks))
    return header + b" " + _b64(mac) + b"\n" + nonce + payload
