"""age streams: our Writer and Reader against each other and against the real age CLI."""

import io
import os
import shutil
import subprocess

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.keys import age

needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="age CLI not installed")
C = age.CHUNK
SIZES = [0, 1, C - 1, C, C + 1, 3 * C, 3 * C + 17]


def keygen(tmp_path, name="id"):
    """A fresh identity (our parser reads age-keygen's format) -> (identity file, recipient)."""
    if shutil.which("age-keygen"):
        path = tmp_path / name
        out = subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, text=True, check=True)
        return path, [w for w in out.stderr.split() if w.startswith("age1")][0]
    pytest.skip("age-keygen not installed")


def seal(data, recipients, pieces=1):
    out = io.BytesIO()
    w = age.Writer(out, recipients)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        w.write(data[i:i + step])
    w.close()
    assert w.plain_bytes == len(data)
    return out.getvalue()


def unseal(blob, ident_path):
    ids = age.parse_identities(ident_path.read_text())
    return b"".join(age.Reader(io.BytesIO(blob), ids))


@needs_age
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pieces", [1, 7])
def test_writer_reader_round_trip_and_the_cli_opens_it(tmp_path, size, pieces):
    ident, rcpt = keygen(tmp_path)
    data = os.urandom(size)
    blob = seal(data, [rcpt], pieces)
    assert unseal(blob, ident) == data
    (tmp_path / "f.age").write_bytes(blob)
    cli = subprocess.run(["age", "-d", "-i", str(ident), str(tmp_path / "f.age")], capture_output=True, check=True)
    assert cli.stdout == data


@needs_age
@pytest.mark.parametrize("size", [0, C, 2 * C + 5])
def test_reader_opens_what_the_cli_wrote(tmp_path, size):
    ident, rcpt = keygen(tmp_path)
    other, rcpt2 = keygen(tmp_path, "other")
    data = os.urandom(size)
    blob = subprocess.run(["age", "-r", rcpt2, "-r", rcpt], input=data, capture_output=True, check=True).stdout
    assert unseal(blob, ident) == data
    assert unseal(blob, other) == data


@needs_age
def test_damage_of_any_kind_is_refused(tmp_path):
    ident, rcpt = keygen(tmp_path)
    wrong = keygen(tmp_path, "wrong")[0]
    blob = seal(os.urandom(3 * C + 100), [rcpt])
    header_end = blob.index(b"\n---") + 1

    def refused(b, ident_path=ident, match=None):
        with pytest.raises(age.AgeFileError, match=match):
            unseal(b, ident_path)

    flipped = bytearray(blob)
    flipped[len(blob) - 50] ^= 1
    refused(bytes(flipped), match="chunk 3 is damaged")
    header = bytearray(blob)
    header[header_end - 5] ^= 1  # inside the last stanza's body
    refused(bytes(header))
    refused(blob[:-(100 + 16)], match="damaged, truncated")  # the final short chunk cut off
    refused(blob[:-1], match="chunk 3")
    refused(blob + b"x", match="chunk 3")  # a byte appended to a short last chunk changes it
    refused(blob[:header_end], match="truncated")
    refused(blob, wrong, match="no identity matches")
    refused(b"not age\n", match="not an age file")
    refused(b"", match="truncated or malformed")


@needs_age
def test_a_full_last_chunk_then_garbage_is_refused(tmp_path):
    ident, rcpt = keygen(tmp_path)
    blob = seal(os.urandom(2 * C), [rcpt])
    with pytest.raises(age.AgeFileError):
        unseal(blob + os.urandom(10), ident)


def test_identity_file_errors_never_quote_the_secret():
    with pytest.raises(age.AgeFileError, match="no AGE-SECRET-KEY-1 line"):
        age.parse_identities("# only a comment\n\n")
    secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
    with pytest.raises(age.AgeFileError) as e:
        age.parse_identities("# created: now\n" + secret + "\n")
    assert "line 2" in str(e.value) and secret not in str(e.value)
    with pytest.raises(age.AgeFileError, match="line 1"):
        age.parse_identities("ssh-ed25519 AAAA\n")


def test_writer_needs_a_valid_recipient():
    with pytest.raises(age.RecipientError):
        age.Writer(io.BytesIO(), [])
    with pytest.raises(age.RecipientError, match="Bech32"):
        age.Writer(io.BytesIO(), ["age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"])
