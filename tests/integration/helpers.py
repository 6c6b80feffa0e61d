"""Helpers for the integration tests (imported by tests and conftest)."""

import os
import re
import subprocess


def sh(*argv, check=True, **kw):
    """Run a tool directly (test set-up and independent checks of the kernel's state)."""
    proc = subprocess.run(argv, check=False, text=True, capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%s): %s"
                             % (" ".join(argv), proc.returncode, proc.stderr.strip()))
    return proc


def loops_of(path):
    """Loop devices backing path, straight from losetup (independent of the module)."""
    return sh("losetup", "--noheadings", "--output", "NAME", "--associated", path).stdout.split()


def sysfs(device, attr):
    with open("/sys/block/%s/%s" % (os.path.basename(device), attr)) as f:
        return f.read().strip()


def node_name(request, limit=24):
    """The test's name, shortened and safe as a dataset name component."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name[5:5 + limit])


MIB = 1 << 20


def drop_caches():
    sh("sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches")


def write_random(path, mib):
    """Write ``mib`` MiB of random bytes at the start of ``path`` (fsynced); their sha256."""
    import hashlib
    import secrets
    data = secrets.token_bytes(mib * MIB)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return hashlib.sha256(data).hexdigest()


def read_sha(path, mib):
    """sha256 of the first ``mib`` MiB of ``path``, read after dropping the page cache."""
    import hashlib
    drop_caches()
    with open(path, "rb", buffering=0) as f:
        return hashlib.sha256(f.read(mib * MIB)).hexdigest()


def corrupt(path, offset, length=MIB):
    """Overwrite ``length`` bytes of a file (a member's backing file) at ``offset`` with random
    bytes, behind the back of every layer stacked on it."""
    import secrets
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(secrets.token_bytes(length))
        f.flush()
        os.fsync(f.fileno())
