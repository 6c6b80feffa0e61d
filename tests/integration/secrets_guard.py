"""The suite's secrets guard: every key and passphrase the integration tests use is known here,
and nothing may show it.

* ``register`` collects test secrets: ``module()`` (conftest) registers the values of the
  modules' secret options and the contents of every key file a module is given; key factories
  (zfs_scenarios.new_key) register what they write; the last test adds the Molecule scenarios'
  key files.
* ``leaks_in`` checks a text (a module result, a log) against all of them; ``conftest.module``
  fails a test whose module result contains one.
* ``execs``/``argv_leaks`` read the execve trace of the whole run: `make test` starts pytest under
  ``strace -f --seccomp-bpf -e trace=execve`` (lab/test.sh) and names the log in
  ``BV_EXEC_TRACE``; test_secrets.py's last test fails if any argv of any process held a secret.
* ``file_leaks`` scans bytes (a carrier pool's vdev) for a key, as text and as raw bytes.
"""

import os
import re

# Options whose values are secrets, and options naming files whose contents are (every module's
# argument spec spells them so; a nested list of dicts, e.g. zfs_verify's keys, is walked).
SECRET_OPTIONS = frozenset(("passphrase", "add_keys", "remove_keys", "key", "new_key",
                            "secret_content"))
KEY_FILE_OPTIONS = frozenset(("key_file", "new_key_file", "target_key_file", "identity_file",
                              "signing_key", "keylocation", "new_keylocation"))
MIN_LEN = 8  # shorter strings would match by chance; the suite's keys are 16+ characters
MAX_FILE = 64 << 10

_known = set()


def register(value):
    """Remember a secret (a str, or bytes of text). Returns it, for ``key = register(...)``."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return value  # a raw binary key: it cannot be an argv string, and it is not kept
    text = value.strip() if isinstance(value, str) else ""
    lines = text.splitlines()
    if len(lines) > 1:
        # a PEM key or an age identity: each secret line (not a comment such as age's
        # "# public key: age1...", not a PEM armour line) is a secret of its own
        _known.update(line.strip() for line in lines if len(line.strip()) >= 16
                      and not line.startswith(("#", "-----")))
    elif len(text) >= MIN_LEN:
        _known.add(text)
    return value


def register_file(path):
    """Register a key file's contents (text keys only; missing or large files are skipped)."""
    if isinstance(path, str) and path.startswith("file://"):
        path = path[len("file://"):]
    try:
        if not isinstance(path, str) or os.path.getsize(path) > MAX_FILE:
            return
        with open(path, "rb") as f:
            register(f.read())
    except OSError:
        pass


def register_key_files(top):
    """Register the keys found under a directory tree (the Molecule scenarios' work
    directories): hex and passphrase files, private PEM keys and age identities, by content;
    public keys, streams and packages are left out."""
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > MAX_FILE:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            lines = [l for l in data.splitlines() if l.strip() and not l.startswith(b"#")]
            pem = data.startswith(b"-----BEGIN") and b"PRIVATE KEY-----" in data.split(b"\n", 1)[0]
            identity = lines and all(l.startswith(b"AGE-SECRET-KEY-") for l in lines)
            if name.endswith((".hex", ".pass", ".key")) or pem or identity:
                register(data)


def harvest(args):
    """Register every secret in a module's arguments (walks nested dicts and lists; not
    ``properties``, whose keylocation is a ZFS property, not a key this suite made)."""
    if isinstance(args, dict):
        for name, value in args.items():
            if name == "properties":
                continue
            if name in SECRET_OPTIONS:
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str):
                        register(v)
            elif name in KEY_FILE_OPTIONS:
                register_file(value)
            else:
                harvest(value)
    elif isinstance(args, list):
        for item in args:
            harvest(item)


def known():
    return set(_known)


def leaks_in(text, secrets=None):
    """The secrets that occur in ``text``."""
    return sorted(s for s in (_known if secrets is None else secrets) if s in text)


def mask(secret):
    return "%s…(%d chars)" % (secret[:4], len(secret))


# strace -f -z -e trace=execve (successful calls only, each printed whole):
#   PID execve("/usr/sbin/zfs", ["zfs", "load-key", ...], 0x.. /* N vars */) = 0
EXEC_LINE = re.compile(r'^(?P<pid>\d+)\s+execve\("(?P<path>(?:[^"\\]|\\.)*)", \[(?P<argv>.*)\], ')


def execs(trace_path):
    """(pid, path, argv text) of every execve in an strace log."""
    with open(trace_path, errors="replace") as f:
        for line in f:
            m = EXEC_LINE.match(line)
            if m:
                yield m.group("pid"), m.group("path"), m.group("argv")


TRUNCATED = re.compile(r'(?<!\\)"\.\.\.(?:, |$)|\.\.\.$')


def truncated(argv):
    """Whether strace cut an argv string (``"abc"...``) or the array (``..., ...``)."""
    return bool(TRUNCATED.search(argv))


def argv_leaks(trace_path, secrets=None):
    """[(pid, path, masked secret)] for every execve whose argv contains a secret, and the number
    of execve lines read."""
    found, count = [], 0
    for pid, path, argv in execs(trace_path):
        count += 1
        for s in leaks_in(argv, secrets):
            found.append((pid, path, mask(s)))
    return found, count


def file_leaks(path, secrets, chunk=8 << 20):
    """The secrets (given as str) found in a file's bytes, as text or, for hex keys, as the raw
    key bytes they encode."""
    needles = {}
    for s in secrets:
        needles[s.encode()] = s
        if re.fullmatch(r"[0-9a-fA-F]{64}", s):
            needles[bytes.fromhex(s)] = s
    longest = max((len(n) for n in needles), default=0)
    found = set()
    tail = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            window = tail + block
            found.update(s for n, s in needles.items() if n in window)
            tail = window[-longest:] if longest else b""
    return sorted(found)
