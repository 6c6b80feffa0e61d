# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""age (age-encryption.org/v1) with X25519 recipients, in pure Python over ``cryptography``.

Escrowed key material is written with :func:`encrypt` and recovered with the standard
``age -d``. Send streams go through :class:`Writer` (chunk by chunk, nothing held in memory
or on disk in the clear) and come back through :class:`Reader` with an ``AGE-SECRET-KEY-1``
identity; both interoperate with the ``age`` command-line tool.
The format: a header with one X25519 stanza per recipient, an HMAC over the header, then a
ChaCha20-Poly1305 STREAM payload in 64 KiB chunks, the last one flagged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os

try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.exceptions import InvalidTag
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


class AgeFileError(ValueError):
    """An age file that cannot be opened: not age, no matching identity, damaged, truncated."""


class NotForUs(AgeFileError):
    """Not an age file, or one addressed to none of the identities (someone else's file)."""


def _bech32_polymod(values):
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _bech32_decode(text, hrp_wanted, what, error):
    """Bech32 ``text`` with human-readable part ``hrp_wanted`` -> its 32-byte payload."""
    s = text.strip()
    if s.lower() != s and s.upper() != s:
        raise error("mixed case in %s" % what)
    s = s.lower()
    hrp, sep, data = s.rpartition("1")
    if not sep or hrp != hrp_wanted or len(data) < 6:
        raise error("%s is malformed" % what)
    try:
        values = [_CHARSET.index(c) for c in data]
    except ValueError:
        raise error("%s has characters outside Bech32" % what) from None
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    if _bech32_polymod(expanded + values) != 1:
        raise error("%s: bad Bech32 checksum (a typo?)" % what)
    acc = bits = 0
    out = bytearray()
    for v in values[:-6]:
        acc = (acc << 5) | v
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        raise error("%s: bad Bech32 padding" % what)
    if len(out) != 32:
        raise error("%s does not hold a 32-byte X25519 key" % what)
    return bytes(out)


def parse_recipient(text):
    """``age1...`` (Bech32, HRP ``age``) -> the 32-byte X25519 public key."""
    if not text.strip().lower().startswith("age1"):
        raise RecipientError("%r is not an age X25519 recipient (age1...)" % text)
    return _bech32_decode(text, "age", "the age X25519 recipient %r" % text, RecipientError)


def parse_identities(text):
    """The ``AGE-SECRET-KEY-1...`` lines of an identity file (``age-keygen`` output) -> keys.

    Comments and blank lines are skipped; the error never quotes the secret."""
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.upper().startswith("AGE-SECRET-KEY-1"):
            raise AgeFileError("identity file line %d is not an age X25519 identity (AGE-SECRET-KEY-1...)" % n)
        keys.append(X25519PrivateKey.from_private_bytes(
            _bech32_decode(line, "age-secret-key-", "the identity on line %d" % n, AgeFileError)))
    if not keys:
        raise AgeFileError("the identity file holds no AGE-SECRET-KEY-1 line")
    return keys


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


def _unb64(data):
    if len(data) % 4 == 1 or b"=" in data:
        raise AgeFileError("bad base64 in the age header")
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except ValueError:
        raise AgeFileError("bad base64 in the age header") from None


def _nonce(counter, last):
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Writer:
    """Encrypt a stream to ``recipients`` into the binary file ``out``, chunk by chunk.

    ``write()`` as often as needed, then ``close()`` (which writes the last chunk; it does not
    close ``out``). A chunk is held back until more data shows it is not the last."""

    def __init__(self, out, recipients):
        keys = [parse_recipient(r) for r in recipients]
        if not keys:
            raise RecipientError("at least one recipient is needed")
        file_key = os.urandom(16)
        header = b"age-encryption.org/v1\n" + b"".join(_stanza(file_key, k) for k in keys) + b"---"
        mac = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
        nonce = os.urandom(16)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._out = out
        self._buf = bytearray()
        self._counter = 0
        self.plain_bytes = 0
        start = header + b" " + _b64(mac) + b"\n" + nonce
        # The header (the wrapped file key, its MAC) and the payload nonce fix the payload key:
        # a signature over this hash authenticates every chunk that follows (Reader checks it).
        self.header_sha256 = hashlib.sha256(start).hexdigest()
        out.write(start)

    def write(self, data):
        self._buf += data
        self.plain_bytes += len(data)
        while len(self._buf) > CHUNK:  # strictly more: the last chunk must not be empty
            self._emit(bytes(self._buf[:CHUNK]), False)
            del self._buf[:CHUNK]

    def close(self):
        self._emit(bytes(self._buf), True)
        self._buf = bytearray()

    def _emit(self, chunk, last):
        self._out.write(self._aead.encrypt(_nonce(self._counter, last), chunk, None))
        self._counter += 1


def encrypt(plaintext, recipients):
    """``plaintext`` (bytes) encrypted to every ``age1...`` recipient, as an age file's bytes."""
    out = io.BytesIO()
    w = Writer(out, recipients)
    w.write(plaintext)
    w.close()
    return out.getvalue()


def _read_line(f, limit=4096):
    line = f.readline(limit)
    if not line.endswith(b"\n"):
        raise AgeFileError("truncated or malformed age header")
    return line[:-1]


class Reader:
    """Decrypt the age file ``f`` (binary, positioned at its start) with one of ``identities``.

    Iterate over it for the plaintext chunks. Every chunk is authenticated before it is
    yielded; a damaged, truncated or extended file raises :class:`AgeFileError` at the chunk
    where it is found. age authenticates no sender: ``header_sha256`` (from a signed
    :attr:`Writer.header_sha256`) binds the file to its writer, since the header and nonce fix
    the payload key; it is checked before any chunk is yielded."""

    def __init__(self, f, identities, header_sha256=None):
        self._f = f
        if _read_line(f) != b"age-encryption.org/v1":
            raise NotForUs("not an age file (age-encryption.org/v1)")
        header = b"age-encryption.org/v1\n"
        stanzas = []
        while True:
            line = _read_line(f)
            if line.startswith(b"---"):
                header += b"---"
                mac_line = line[3:]
                mac = _unb64(line[4:]) if line[3:4] == b" " else b""
                break
            if not line.startswith(b"-> "):
                raise AgeFileError("malformed age header")
            header += line + b"\n"
            args, body = line[3:].split(b" "), b""
            while True:
                part = _read_line(f)
                header += part + b"\n"
                body += part
                if len(part) < 64:
                    break
            stanzas.append((args, body))
        file_key = None
        for args, body in stanzas:
            if args[0] != b"X25519" or len(args) != 2:
                continue
            share = _unb64(args[1])
            for ident in identities:
                recipient = ident.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                try:
                    shared = ident.exchange(X25519PublicKey.from_public_bytes(share))
                except ValueError:  # not 32 bytes, or a low-order point
                    raise AgeFileError("an X25519 stanza of the age header is invalid") from None
                wrap = _hkdf(shared, share + recipient, b"age-encryption.org/v1/X25519")
                try:
                    file_key = ChaCha20Poly1305(wrap).decrypt(bytes(12), _unb64(body), None)
                    break
                except InvalidTag:
                    continue
            if file_key is not None:
                break
        if file_key is None:
            raise NotForUs("no identity matches any recipient of this age file")
        want = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
        if not hmac.compare_digest(want, mac):
            raise AgeFileError("the age header's MAC does not match (the header was altered)")
        nonce = f.read(16)
        if len(nonce) != 16:
            raise AgeFileError("truncated age file (no payload nonce)")
        self.header_sha256 = hashlib.sha256(header + mac_line + b"\n" + nonce).hexdigest()
        if header_sha256 is not None and not hmac.compare_digest(self.header_sha256, header_sha256):
            raise AgeFileError("the age header is not the one the manifest signed (another writer's file)")
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))

    def __iter__(self):
        size = CHUNK + 16
        counter = 0
        chunk = self._f.read(size)
        while True:
            if not chunk:
                raise AgeFileError("truncated age file (no final chunk)")
            following = self._f.read(size) if len(chunk) == size else b""
            last = not following
            try:
                plain = self._aead.decrypt(_nonce(counter, last), chunk, None)
            except InvalidTag:
                raise AgeFileError("age payload chunk %d is damaged, truncated or reordered" % counter) from None
            if last and not plain and counter:
                raise AgeFileError("age payload ends with an empty chunk")
            if last and len(chunk) < size and self._f.read(1):
                raise AgeFileError("data after the last age payload chunk")
            yield plain
            if last:
                return
            counter += 1
            chunk = following
