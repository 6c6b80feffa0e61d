"""Real ZFS states built with bare commands, for the integration tests and for recording
the unit tests' fixtures (``python tests/integration/zfs_scenarios.py record DIR`` in the lab).

``keychange_replicas`` reproduces the seeds' incident and its relatives: an encryption root
and its child are seeded raw (``send -w -R``) to a replica, the source root's key changes,
and then only part of the group is sent again.
"""

import os
import secrets
import subprocess
import sys

from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import (
    columns_for,
)
from secrets_guard import register as register_secret

# case: (old keyformat, new keyformat, what is sent after the change)
KEYCHANGE_CASES = {
    "pp-hex": ("passphrase", "hex", "child"),    # seen: keyformat differs
    "hex-pp": ("hex", "passphrase", "child"),    # seen: keyformat differs
    "pp-pp": ("passphrase", "passphrase", "child"),  # seen: pbkdf2 salt differs
    "hex-hex": ("hex", "hex", "child"),          # blind spot: nothing differs
    "healthy": ("passphrase", "hex", "group"),   # root and child sent: fine
}
PAYLOAD = b"blindvault payload\n" * 1000


def sh(*argv, data=None):
    return subprocess.run(argv, input=data, check=True, capture_output=True).stdout


def pipe(send, recv):
    """send | recv, both checked."""
    p1 = subprocess.Popen(send, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = subprocess.run(recv, stdin=p1.stdout, capture_output=True, check=False)
    p1.stdout.close()
    err1 = p1.stderr.read()
    if p1.wait() != 0 or p2.returncode != 0:
        raise RuntimeError("%s | %s failed: %s %s" % (" ".join(send), " ".join(recv),
                                                      err1.decode(), p2.stderr.decode()))


def new_key(keydir, name, keyformat):
    path = os.path.join(keydir, name)
    key = secrets.token_hex(32) if keyformat == "hex" else "pass-" + secrets.token_hex(8)
    with open(path, "w") as f:
        f.write(register_secret(key))
    os.chmod(path, 0o600)
    return path


def key_opts(keyformat, path):
    opts = ["-o", "keyformat=" + keyformat, "-o", "keylocation=file://" + path]
    if keyformat == "passphrase":
        opts += ["-o", "pbkdf2iters=100000"]  # the minimum: TCG is slow
    return opts


def make_pool(root, name, size="128M"):
    """A pool on a file vdev under root, mounted under root/alt, never in a cachefile."""
    vdev = os.path.join(root, name + ".vdev")
    sh("truncate", "-s", size, vdev)
    sh("zpool", "create", "-f", "-o", "cachefile=none", "-R", os.path.join(root, "alt"),
       name, vdev)
    return name


def destroy_pool(name):
    subprocess.run(["zpool", "destroy", "-f", name], capture_output=True, check=False)


def keychange_replicas(src, dst, keydir, cases=None):
    """Build every case under src/<case> and dst/<case>. Returns {case: {old, new key paths}}."""
    keys = {}
    for case, (old_fmt, new_fmt, sent) in (cases or KEYCHANGE_CASES).items():
        s, d = "%s/%s" % (src, case), "%s/%s" % (dst, case)
        old = new_key(keydir, case + ".old", old_fmt)
        new = new_key(keydir, case + ".new", new_fmt)
        keys[case] = {"old": old, "new": new, "old_format": old_fmt, "new_format": new_fmt}
        sh("zfs", "create", "-o", "encryption=aes-256-gcm", *key_opts(old_fmt, old), s)
        sh("zfs", "create", s + "/child")
        # (the mountpoint property already includes the pool's altroot)
        mnt = sh("zfs", "get", "-Hp", "-o", "value", "mountpoint", s + "/child").decode().strip()
        with open(os.path.join(mnt, "payload"), "wb") as f:
            f.write(PAYLOAD)
        sh("zfs", "snapshot", "-r", s + "@s1")
        pipe(["zfs", "send", "-w", "-R", s + "@s1"], ["zfs", "recv", "-u", d])
        sh("zfs", "change-key", *key_opts(new_fmt, new), s)
        sh("zfs", "snapshot", "-r", s + "@s2")
        if sent == "child":
            pipe(["zfs", "send", "-w", "-i", "@s1", s + "/child@s2"],
                 ["zfs", "recv", "-u", "-F", d + "/child"])
        else:
            pipe(["zfs", "send", "-w", "-R", "-I", "@s1", s + "@s2"], ["zfs", "recv", "-u", "-F", d])
    return keys


def record(outdir):
    """Record `zfs list` of damaged replicas for the unit tests (run inside the lab VM)."""
    import tempfile
    root = tempfile.mkdtemp(prefix="bvrec-", dir="/tmp")
    keydir = os.path.join(root, "keys")
    os.makedirs(keydir)
    make_pool(root, "bvrecsrc", "256M")
    make_pool(root, "bvrecdst", "256M")
    try:
        keychange_replicas("bvrecsrc", "bvrecdst", keydir)
        sh("zfs", "bookmark", "bvrecsrc/healthy@s2", "bvrecsrc/healthy#s2")
        sh("zfs", "hold", "blindvault:bvrecdst/healthy", "bvrecsrc/healthy@s2")
        cols = columns_for()
        for pool in ("bvrecsrc", "bvrecdst"):
            out = sh("zfs", "list", "-Hp", "-t", "all", "-o", ",".join(cols), "-r", pool)
            with open(os.path.join(outdir, "zfs-list-%s.tsv" % pool[5:]), "wb") as f:
                f.write(out)
        with open(os.path.join(outdir, "zfs-holds.tsv"), "wb") as f:
            f.write(sh("zfs", "holds", "-H", "bvrecsrc/healthy@s2"))
        with open(os.path.join(outdir, "zfs-list.columns"), "w") as f:
            f.write(",".join(cols) + "\n")
        sh("zfs", "release", "blindvault:bvrecdst/healthy", "bvrecsrc/healthy@s2")
    finally:
        destroy_pool("bvrecsrc")
        destroy_pool("bvrecdst")


if __name__ == "__main__":
    if sys.argv[1:2] == ["record"]:
        record(sys.argv[2])
