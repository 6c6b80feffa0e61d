"""The bad-input harness (issue #8): for every module a table of malformed and hostile inputs,
and a table of real change requests made in check mode.

Names with ``@``/``#``/spaces/``..``/a leading ``/``, option conflicts, missing devices, devices
already in use, pools that do not exist, wrong keys, and list forms with one bad item among
good ones. Every case must fail with a clear message (no traceback), leak no key, and leave the
system as it was: ``state()`` is read before and after each call and must not differ.

One small world is built once for the whole file (about 15 processes): a pool ``bvhx`` on a
loop device with an encryption root (hex key in a 0600 file) and its child, an unencrypted
dataset with two snapshots and a bookmark, an open dm-integrity mapping, a closed LUKS2
volume, and blank loop devices. Everything here is named ``bvhx*``; ``state()`` looks only at
that (Molecule scenarios run beside pytest in the VM and change the rest of the system).
"""

import os
import secrets
import shutil
import stat
import tempfile

import pytest

from helpers import sh

PREFIX = "bvhx"
POOL = PREFIX
NOPOOL = PREFIX + "nopool"
INTEGRITY = PREFIX + "int"
LUKS = PREFIX + "luks"
MISSING_DEV = "/dev/%s-nonexistent" % PREFIX
FAST = {"pbkdf": "pbkdf2", "pbkdf_iterations": 1000}
ZFS_COLUMNS = ("name,type,guid,keystatus,keylocation,keyformat,encryptionroot,mounted,readonly,"
               "userrefs,blindvault:key-id")
DEVICES = (("pool", 128), ("spare", 64), ("integ", 64), ("luks", 64), ("victim", 64))
M = 1 << 20


def service(command):
    return "[Unit]\nDescription=bvhx\n\n[Service]\nType=oneshot\nExecStart=%s\n" % command


# -- the world -------------------------------------------------------------------------------

def _write_key(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _build(root):
    w = {"root": root, "scratch": os.path.join(root, "scratch")}
    keydir = os.path.join(root, "keys")
    os.mkdir(keydir, 0o700)
    for sub in ("units", "empty"):
        os.makedirs(os.path.join(w["scratch"], sub))
    with open(os.path.join(w["scratch"], "real.txt"), "w") as f:
        f.write("x")
    os.symlink(os.path.join(w["scratch"], "real.txt"), os.path.join(w["scratch"], "link.service"))

    w.update(right=secrets.token_hex(32), wrong=secrets.token_hex(32), new=secrets.token_hex(32),
             luks_pass=secrets.token_hex(16), luks_wrong=secrets.token_hex(16))
    w["right_file"] = _write_key(os.path.join(keydir, "right.hex"), w["right"])
    w["wrong_file"] = _write_key(os.path.join(keydir, "wrong.hex"), w["wrong"])
    w["secrets"] = [w[k] for k in ("right", "wrong", "new", "luks_pass", "luks_wrong")]
    # a site's stream keys: its Ed25519 signing key, and an age recipient (another site's)
    w["signing_key"] = os.path.join(keydir, "site.pem")
    sh("openssl", "genpkey", "-algorithm", "ed25519", "-out", w["signing_key"])
    made = sh("age-keygen", "-o", os.path.join(keydir, "other.age"))
    w["recipient"] = [x for x in made.stderr.split() if x.startswith("age1")][0]

    w["files"], w["dev"] = {}, {}
    for name, mib in DEVICES:
        img = os.path.join(root, name + ".img")
        with open(img, "wb") as f:
            f.truncate(mib * M)
        w["files"][name] = img
        w["dev"][name] = sh("losetup", "--find", "--show", img).stdout.strip()

    sh("zpool", "create", "-f", "-o", "cachefile=none", "-R", os.path.join(root, "alt"), POOL,
       w["dev"]["pool"])
    sh("zfs", "create", "-o", "encryption=aes-256-gcm", "-o", "keyformat=hex", "-o",
       "keylocation=file://" + w["right_file"], "-o", "canmount=noauto", POOL + "/enc")
    sh("zfs", "create", "-o", "canmount=noauto", POOL + "/enc/child")
    sh("zfs", "create", POOL + "/plain")
    sh("zfs", "snapshot", "-r", POOL + "@s1")
    sh("zfs", "snapshot", POOL + "/plain@s2")
    sh("zfs", "bookmark", POOL + "/plain@s1", POOL + "/plain#s1")
    sh("zfs", "unload-key", POOL + "/enc")

    sh("integritysetup", "format", "--batch-mode", "--no-wipe", "--tag-size", "4",
       "--sector-size", "4096", "--integrity", "crc32c", w["dev"]["integ"])
    sh("integritysetup", "open", w["dev"]["integ"], INTEGRITY, "--integrity", "crc32c")
    sh("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
       "--pbkdf-force-iterations", "1000", "--key-file", "-", w["dev"]["luks"], input=w["luks_pass"])
    sh("udevadm", "settle", check=False)
    return w


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _loops(root):
    """{loopN: (backing file, ro, autoclear, dio, size)} for loop devices over files under root."""
    found = {}
    for kname in sorted(os.listdir("/sys/block")):
        back = _read("/sys/block/%s/loop/backing_file" % kname) if kname.startswith("loop") else None
        if back and back.startswith(root):
            found[kname] = (back,) + tuple(_read("/sys/block/%s/%s" % (kname, attr))
                                           for attr in ("ro", "loop/autoclear", "loop/dio", "size"))
    return found


def _release(kname):
    """Take down what is stacked on kernel device kname (md arrays, dm mappings), top first."""
    holders = "/sys/class/block/%s/holders" % kname
    for holder in sorted(os.listdir(holders)) if os.path.isdir(holders) else []:
        _release(holder)
        if holder.startswith("md"):
            sh("mdadm", "--stop", "/dev/" + holder, check=False)
        elif holder.startswith("dm-"):
            name = _read("/sys/class/block/%s/dm/name" % holder)
            if name:
                sh("dmsetup", "remove", "--retry", name, check=False)


def _teardown(root):
    """Whatever the cases left, even after a failed build: pools, stacks, loops, files."""
    sh("udevadm", "settle", check=False)
    for pool in sh("zpool", "list", "-H", "-o", "name", check=False).stdout.splitlines():
        if pool.startswith(PREFIX):
            sh("zpool", "destroy", "-f", pool, check=False)
    loops = _loops(root)
    for kname in loops:
        _release(kname)
    for kname in loops:
        sh("losetup", "--detach", "/dev/" + kname, check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def world():
    root = tempfile.mkdtemp(prefix=PREFIX + "-", dir="/tmp")
    try:
        yield _build(root)
    finally:
        _teardown(root)


# -- the state a case must not change ---------------------------------------------------------

def _stack(kname):
    holders = "/sys/class/block/%s/holders" % kname
    return [(h, _read("/sys/class/block/%s/dm/name" % h), _stack(h))
            for h in (sorted(os.listdir(holders)) if os.path.isdir(holders) else [])]


def _files(root):
    found = []
    for top, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else \
                "f" if stat.S_ISREG(st.st_mode) else "o"
            found.append((os.path.relpath(path, root), kind, "%04o" % stat.S_IMODE(st.st_mode),
                          st.st_size if kind == "f" else None,
                          os.readlink(path) if kind == "l" else None))
    return sorted(found)


def state(w):
    """Everything of this file's world a module could change, in two processes: datasets (and
    any new bvhx pool), signatures on the loop devices, loop attachments (sysfs), what is
    stacked on them (dm, md), bvhx mappings and arrays, mounts, and the files under root."""
    zfs = sh("zfs", "list", "-Hp", "-t", "all", "-o", ZFS_COLUMNS, check=False).stdout
    devs = [w["dev"][name] for name, _mib in DEVICES]
    sigs = sh("wipefs", "--no-act", "--noheadings", "--output", "DEVICE,TYPE,UUID", *devs,
              check=False)
    knames = [os.path.basename(d) for d in devs]
    with open("/proc/mdstat") as f:
        mdstat = [line.split(":")[0].strip() + ": " + line.split(":", 1)[-1].strip()
                  for line in f if line.startswith("md") and any(k + "[" in line for k in knames)]
    with open("/proc/self/mounts") as f:
        mounts = sorted(line.strip() for line in f if PREFIX in line)
    return {
        "zfs": sorted(line for line in zfs.splitlines() if line.startswith(PREFIX)),
        # ZFS writes a label's uberblocks as it syncs: wipefs lists one line per copy it finds,
        # so the number of identical lines moves; what they say must not
        "signatures": (sigs.returncode, sorted(set(sigs.stdout.splitlines()))),
        "loops": _loops(w["root"]),
        "stacked": {d: _stack(k) for d, k in zip(devs, knames)},
        "named": sorted(n for d in ("/dev/mapper", "/dev/md") if os.path.isdir(d)
                        for n in os.listdir(d) if n.startswith(PREFIX)),
        "mdstat": mdstat,
        "mounts": mounts,
        "files": _files(w["root"]),
    }


def _changes(before, after):
    out = []
    for key in before:
        b, a = before[key], after[key]
        if b == a:
            continue
        if isinstance(b, list) and isinstance(a, list):
            out.append("%s: gone %r, new %r" % (key, [x for x in b if x not in a],
                                                [x for x in a if x not in b]))
        else:
            out.append("%s: %r -> %r" % (key, b, a))
    return out


# -- the table ---------------------------------------------------------------------------------

def case(module, what, args, expected):
    """One row: pytest id ``module-what``; ``args`` a dict or a function of the world; ``expected``
    a short piece of the module's own fail_json message."""
    return pytest.param(module, args, expected, id="%s-%s" % (module, what))


def sp(w, *parts):
    return os.path.join(w["scratch"], *parts)


def stream_args(w, state, **over):
    """zfs_stream arguments, bad at least in their key material (a hex key file is neither a
    signing key nor an age identity; age1notakey is no recipient)."""
    args = {"state": state, "dataset": POOL + "/enc", "directory": w["scratch"]}
    if state == "exported":
        args.update(target_id="site-b", recipients=["age1notakey"], signing_key=w["right_file"])
    else:
        args.update(target=POOL + "/" + PREFIX + "imp", allow_unsigned=True,
                    identity_file=w["right_file"])
    return dict(args, **over)


CASES = [
    # encryption_key
    case("encryption_key", "directory-missing",
         lambda w: {"path": sp(w, "nodir", "k.hex")}, "does not exist"),
    case("encryption_key", "path-is-a-directory",
         lambda w: {"path": w["scratch"]}, "not a regular file"),
    case("encryption_key", "existing-key-of-another-format",
         lambda w: {"path": w["right_file"], "format": "raw"}, "is kept"),
    case("encryption_key", "bad-escrow-recipient",
         lambda w: {"path": sp(w, "bvhx-esc.hex"), "escrow_recipients": ["age1notakey"]},
         "escrow_recipients"),
    case("encryption_key", "list-one-missing-directory-among-good",
         lambda w: {"keys": [{"path": sp(w, "bvhx-good.hex")}, {"path": sp(w, "nodir", "bad.hex")}]},
         "does not exist"),
    case("encryption_key", "keys-with-top-level-escrow_path",
         lambda w: {"keys": [{"path": sp(w, "bvhx-k.hex")}], "escrow_path": sp(w, "bvhx-k.age")},
         "per key"),

    # integrity_device
    case("integrity_device", "name-dotdot",
         lambda w: {"device": w["dev"]["spare"], "name": ".."}, "not a valid device-mapper name"),
    # device-mapper names: no whitespace (was let through, and the victim got formatted)
    case("integrity_device", "name-with-space",
         lambda w: {"device": w["dev"]["victim"], "name": PREFIX + " x", "wipe": "none"},
         "not a valid device-mapper name"),
    case("integrity_device", "missing-device",
         {"device": MISSING_DEV, "name": PREFIX + "x"}, "does not exist"),
    case("integrity_device", "device-open-as-another-mapping",
         lambda w: {"device": w["dev"]["integ"], "name": PREFIX + "other"}, "already open as"),
    case("integrity_device", "hmac-without-key_file",
         lambda w: {"device": w["dev"]["spare"], "name": PREFIX + "x", "algorithm": "hmac-sha256"},
         "needs key_file"),
    case("integrity_device", "list-pool-device-among-good",
         lambda w: {"devices": [{"device": w["dev"]["spare"], "name": PREFIX + "good"},
                                {"device": w["dev"]["pool"], "name": PREFIX + "bad"}],
                    "wipe": "none"}, "zfs_member"),

    # loop_device
    case("loop_device", "relative-path", {"file": PREFIX + "-rel.img", "size": "1M"},
         "absolute path"),
    case("loop_device", "dotdot-path-missing-file",
         lambda w: {"file": sp(w, "..", PREFIX + "-none.img")}, "give size"),
    case("loop_device", "file-is-a-directory", lambda w: {"file": w["scratch"]},
         "not a regular file"),
    case("loop_device", "shrink-the-pools-file",
         lambda w: {"file": w["files"]["pool"], "size": "1M"}, "refusing to shrink"),
    case("loop_device", "read_only-on-the-pools-live-device",
         lambda w: {"file": w["files"]["pool"], "read_only": True}, "read_only cannot change"),
    # refused before the lazy detach (autoclear) that used to precede the refusal
    case("loop_device", "absent-while-a-mapping-holds-it",
         lambda w: {"file": w["files"]["integ"], "state": "absent"}, "is in use by"),

    # luks2_volume
    case("luks2_volume", "open-with-wrong-passphrase",
         lambda w: {"device": w["dev"]["luks"], "name": LUKS, "state": "opened",
                    "passphrase": w["luks_wrong"]}, "does not unlock"),
    case("luks2_volume", "name-dotdot",
         lambda w: {"device": w["dev"]["luks"], "name": "..", "state": "opened",
                    "passphrase": w["luks_pass"]}, "not a valid device-mapper name"),
    case("luks2_volume", "missing-device",
         lambda w: dict(FAST, device=MISSING_DEV, passphrase=w["luks_pass"]), "does not exist"),
    case("luks2_volume", "format-the-pools-device",
         lambda w: dict(FAST, device=w["dev"]["pool"], passphrase=w["luks_pass"], wipe="none"),
         "zfs_member"),
    case("luks2_volume", "pbkdf_iterations-with-iter_time",
         lambda w: {"device": w["dev"]["luks"], "passphrase": w["luks_pass"], "pbkdf": "pbkdf2",
                    "pbkdf_iterations": 1000, "iter_time": 100}, "mutually exclusive"),
    case("luks2_volume", "list-integrity-device-among-good",
         lambda w: {"volumes": [{"device": w["dev"]["luks"], "name": LUKS, "state": "opened"},
                                {"device": w["dev"]["integ"], "wipe": "none"}],
                    "passphrase": w["luks_pass"]}, "DM_integrity"),

    # md_array
    case("md_array", "name-dotdot",
         lambda w: {"name": "..", "level": 1, "devices": [w["dev"]["spare"], w["dev"]["victim"]]},
         "not an md array name"),
    case("md_array", "name-with-space",
         lambda w: {"name": PREFIX + " md", "level": 1,
                    "devices": [w["dev"]["spare"], w["dev"]["victim"]]}, "not an md array name"),
    case("md_array", "missing-device",
         lambda w: {"name": PREFIX + "md", "level": 1, "devices": [w["dev"]["spare"], MISSING_DEV]},
         "does not exist"),
    case("md_array", "member-held-by-a-mapping",
         lambda w: {"name": PREFIX + "md", "level": 1,
                    "devices": [w["dev"]["integ"], w["dev"]["spare"]]}, "in use"),
    case("md_array", "member-is-the-pools-device",
         lambda w: {"name": PREFIX + "md", "level": 1,
                    "devices": [w["dev"]["pool"], w["dev"]["spare"]]}, "zfs_member"),
    case("md_array", "raid5-with-two-devices",
         lambda w: {"name": PREFIX + "md", "level": 5,
                    "devices": [w["dev"]["spare"], w["dev"]["victim"]]}, "at least 3"),

    # systemd_units (never systemctl; files only under the scratch directory)
    case("systemd_units", "mode-not-octal",
         lambda w: {"files": [{"path": sp(w, "bvhx-run.sh"), "content": "#!/bin/sh\n", "mode": "rwx"}],
                    "verify": False, "systemd": "never"}, "not an octal permission"),
    case("systemd_units", "directory-missing",
         lambda w: {"files": [{"path": sp(w, "nodir", "bvhx.service"), "content": service("/bin/true")}],
                    "systemd": "never"}, "declare it in directories"),
    case("systemd_units", "symlink-at-the-path",
         lambda w: {"files": [{"path": sp(w, "link.service"), "content": service("/bin/true")}],
                    "systemd": "never"}, "not a regular file"),
    case("systemd_units", "enable-a-path",
         lambda w: {"files": [{"path": sp(w, "bvhx-ok.sh"), "content": "x"}],
                    "enable": ["../bvhx.service"], "verify": False, "systemd": "never"},
         "not a unit name"),
    # the script written before the failed verify is put back
    case("systemd_units", "unit-fails-verify-script-put-back",
         lambda w: {"files": [{"path": sp(w, "bvhx-check.sh"), "content": "#!/bin/sh\n", "mode": "0755"},
                              {"path": sp(w, "units", "bvhx-check.service"),
                               "content": service("/nonexistent/bvhx-check")}],
                    "systemd": "never"}, "systemd-analyze"),
    # a directory made for a unit that fails verify is removed again
    case("systemd_units", "unit-fails-verify-in-a-new-directory",
         lambda w: {"directories": [{"path": sp(w, "bvhx-units")}],
                    "files": [{"path": sp(w, "bvhx-units", "bvhx-bad.service"),
                               "content": service("/nonexistent/bvhx-bad")}],
                    "systemd": "never"}, "systemd-analyze"),

    # zfs_bookmark
    case("zfs_bookmark", "mark-with-at",
         {"snapshot": POOL + "/plain@s1", "bookmark": POOL + "/plain#a@b"}, "not a bookmark name"),
    # short bookmark and snapshot names take the characters dataset names do (no space)
    case("zfs_bookmark", "mark-with-space",
         {"snapshot": POOL + "/plain@s1", "bookmark": PREFIX + " x"}, "not a bookmark name"),
    case("zfs_bookmark", "mark-on-another-dataset",
         {"snapshot": POOL + "/plain@s1", "bookmark": POOL + "/enc#m"}, "snapshot's dataset"),
    case("zfs_bookmark", "snapshot-missing",
         {"snapshot": POOL + "/plain@nosuch", "bookmark": "m"}, "does not exist"),
    case("zfs_bookmark", "nonexistent-pool",
         {"snapshot": NOPOOL + "/x@s", "bookmark": "m"}, "does not exist"),
    case("zfs_bookmark", "name-taken-by-another-snapshots-bookmark",
         {"snapshot": POOL + "/plain@s2", "bookmark": "s1"}, "marks another snapshot"),

    # zfs_dataset
    case("zfs_dataset", "name-with-at", {"name": POOL + "/plain@x"}, "not a dataset name"),
    case("zfs_dataset", "name-with-hash", {"name": POOL + "/plain#x"}, "not a dataset name"),
    case("zfs_dataset", "leading-slash", {"name": "/" + POOL + "/x"}, "not a dataset name"),
    case("zfs_dataset", "nonexistent-pool", {"name": NOPOOL + "/x"}, "not imported"),
    case("zfs_dataset", "key-and-key_file",
         lambda w: {"name": POOL + "/newroot", "encryption": "aes-256-gcm", "keyformat": "hex",
                    "key": w["new"], "key_file": w["right_file"]}, "not both"),
    case("zfs_dataset", "list-name-with-space-among-good",
         {"datasets": [{"name": POOL + "/" + PREFIX + "good"}, {"name": POOL + "/a b"}]},
         "not a dataset name"),
    # a ".." part is refused before the good item is created
    case("zfs_dataset", "list-dotdot-after-good",
         {"datasets": [{"name": POOL + "/" + PREFIX + "good"}, {"name": POOL + "/.."}]},
         "not a dataset name"),

    # zfs_info (a name that does not exist is an answer, exists: false, not an error)
    case("zfs_info", "name-dotdot", {"name": POOL + "/../" + POOL}, "parent reference"),
    case("zfs_info", "leading-slash", {"name": "/" + POOL + "/plain"}, "cannot open"),
    case("zfs_info", "bad-property", {"name": POOL, "properties": ["no such prop"]},
         "invalid property"),
    case("zfs_info", "compare_with-nonexistent-pool",
         {"name": POOL + "/enc", "compare_with": NOPOOL + "/src"}, "compare_with"),
    case("zfs_info", "bad-query", {"name": POOL, "query": "hazards[?"}, "query"),

    # zfs_key
    case("zfs_key", "load-with-wrong-key",
         lambda w: {"name": POOL + "/enc", "state": "loaded", "key": w["wrong"]}, "Incorrect key"),
    case("zfs_key", "name-with-at",
         lambda w: {"name": POOL + "/enc@s1", "state": "loaded", "key_file": w["right_file"]}, "'@'"),
    case("zfs_key", "nonexistent-pool", {"name": NOPOOL + "/x", "state": "loaded"},
         "does not exist"),
    case("zfs_key", "not-encrypted", {"name": POOL + "/plain", "state": "loaded"}, "not encrypted"),
    case("zfs_key", "inherit-with-a-new-key",
         lambda w: {"name": POOL + "/enc", "inherit": True, "new_key": w["new"], "key_id": "k2"},
         "takes no new key"),
    case("zfs_key", "change-key-on-a-member",
         lambda w: {"name": POOL + "/enc/child", "key_file": w["right_file"], "new_key": w["new"],
                    "key_id": "k2"}, "not an encryption root"),

    # zfs_pool
    case("zfs_pool", "name-with-space", {"name": PREFIX + " new", "state": "imported"},
         "not a pool name"),
    case("zfs_pool", "name-dotdot", {"name": "../" + PREFIX, "state": "imported"}, "not a pool name"),
    case("zfs_pool", "dataset-name", {"name": POOL + "/plain", "state": "absent"}, "not a pool name"),
    case("zfs_pool", "imported-but-found-nowhere",
         lambda w: {"name": PREFIX + "nope", "state": "imported", "search_dirs": [sp(w, "empty")]},
         "never creates"),
    case("zfs_pool", "missing-device",
         {"name": PREFIX + "new", "vdevs": [{"devices": [MISSING_DEV]}]}, "do not exist"),
    case("zfs_pool", "create-over-the-pools-device",
         lambda w: {"name": PREFIX + "new", "vdevs": [{"devices": [w["dev"]["pool"]]}]},
         "refusing to create"),

    # zfs_migrate
    case("zfs_migrate", "dataset-with-at",
         lambda w: {"datasets": [POOL + "/plain@s1"], "root": POOL + "/enc", "key_file": w["right_file"]},
         "not a dataset name"),
    case("zfs_migrate", "root-inside-a-migrated-dataset",
         lambda w: {"datasets": [POOL + "/plain"], "root": POOL + "/plain/new", "key_file": w["right_file"]},
         "overlap"),
    case("zfs_migrate", "root-that-does-not-exist",
         lambda w: {"datasets": [POOL + "/plain"], "root": POOL + "/" + PREFIX + "newroot",
                    "key_file": w["right_file"]}, "does not exist"),
    case("zfs_migrate", "wrong-key-file",
         lambda w: {"datasets": [POOL + "/plain"], "root": POOL + "/enc", "key_file": w["wrong_file"]},
         "does not open"),
    case("zfs_migrate", "key-file-missing",
         {"datasets": [POOL + "/plain"], "root": POOL + "/enc", "key_file": "/nonexistent/k.hex"},
         "key_file"),

    # zfs_prune
    case("zfs_prune", "name-with-at", {"name": POOL + "/plain@s1", "keep_last": 1},
         "not a dataset name"),
    case("zfs_prune", "no-rule", {"name": POOL + "/plain"}, "no retention rule"),
    case("zfs_prune", "negative-rule", {"name": POOL + "/plain", "keep_last": -1}, "at least 0"),
    case("zfs_prune", "nonexistent-pool", {"name": NOPOOL + "/x", "keep_last": 1}, "does not exist"),
    case("zfs_prune", "target-inside-the-pruned-tree",
         {"name": POOL + "/plain", "keep_last": 1, "targets": [POOL + "/plain/replica"]}, "overlaps"),
    case("zfs_prune", "target-on-nonexistent-pool",
         {"name": POOL + "/plain", "keep_last": 1, "targets": [NOPOOL + "/replica"]},
         "does not exist"),

    # zfs_replicate
    case("zfs_replicate", "source-with-at",
         {"source": POOL + "/enc@s1", "target": POOL + "/replica"}, "not a dataset name"),
    case("zfs_replicate", "target-inside-source",
         {"source": POOL + "/enc", "target": POOL + "/enc/copy"}, "overlap"),
    case("zfs_replicate", "target-on-nonexistent-pool",
         {"source": POOL + "/enc", "target": NOPOOL + "/replica"}, "does not exist"),
    case("zfs_replicate", "snapshot-format-with-space",
         {"source": POOL + "/enc", "target": POOL + "/replica", "snapshot": "nightly %Y"},
         "not make a valid snapshot name"),
    case("zfs_replicate", "encryption-root-not-recursive",
         {"source": POOL + "/enc", "target": POOL + "/replica", "recursive": False},
         "encryption root"),
    case("zfs_replicate", "property-managed-by-replication",
         {"source": POOL + "/enc", "target": POOL + "/replica",
          "properties": {"keylocation": "file:///etc/shadow"}}, "managed by replication"),

    # zfs_snapshot
    case("zfs_snapshot", "no-at", {"name": POOL + "/plain"}, "not a snapshot name"),
    case("zfs_snapshot", "leading-slash", {"name": "/" + POOL + "/plain@s9"}, "not a snapshot name"),
    case("zfs_snapshot", "dotdot", {"name": POOL + "/../plain@s9"}, "not a snapshot name"),
    case("zfs_snapshot", "nonexistent-pool", {"name": NOPOOL + "/x@s9"}, "do not exist"),
    case("zfs_snapshot", "snapname-with-space", {"name": POOL + "/plain@" + PREFIX + " x"},
         "not a snapshot name"),
    case("zfs_snapshot", "list-hash-among-good",
         {"snapshots": [{"name": POOL + "/plain@" + PREFIX + "new"}, {"name": POOL + "/plain@x#y"}]},
         "not a snapshot name"),

    # zfs_stream (an export's recipient is bad in each row: whatever is checked first must fail)
    case("zfs_stream", "export-dataset-with-at",
         lambda w: stream_args(w, "exported", dataset=POOL + "/enc@s1"), "not a dataset name"),
    case("zfs_stream", "export-bad-recipient", lambda w: stream_args(w, "exported"), "recipients"),
    case("zfs_stream", "export-target-id-with-slash",
         lambda w: stream_args(w, "exported", target_id="site/b"), "target_id"),
    case("zfs_stream", "import-identity-that-is-no-age-identity",
         lambda w: stream_args(w, "imported"), "identity_file"),
    case("zfs_stream", "import-into-a-pool-root",
         lambda w: stream_args(w, "imported", target=POOL), "pool's root dataset"),

    # zfs_verify
    case("zfs_verify", "wrong-key-file",
         lambda w: {"name": POOL + "/enc", "key_file": w["wrong_file"]}, "could not be loaded"),
    case("zfs_verify", "name-with-at", {"name": POOL + "/enc@s1"}, "give a dataset"),
    case("zfs_verify", "nonexistent-pool", {"name": NOPOOL + "/x"}, "does not exist"),
    case("zfs_verify", "snapshot-with-space", {"name": POOL + "/enc", "snapshot": "s 1"},
         "short name"),
    case("zfs_verify", "compare_files_with-in-stream-mode",
         {"name": POOL + "/enc", "compare_files_with": POOL + "/plain"}, "needs mode files"),
    case("zfs_verify", "keys-for-a-dataset-that-is-no-root",
         lambda w: {"name": POOL + "/enc",
                    "keys": [{"encryptionroot": POOL + "/plain", "key_file": w["wrong_file"]}]},
         "not an encryption root"),
]


@pytest.mark.parametrize("name,args,expected", CASES)
def test_bad_input_fails_clearly_and_changes_nothing(module, world, name, args, expected):
    args = args(world) if callable(args) else args
    before = state(world)
    res = module(name, args)
    after = state(world)

    text = str(res)
    problems = []
    if not res.failed:
        problems.append("the module did not fail")
    problems += ["the system changed: " + c for c in _changes(before, after)]
    msg = res.get("msg")
    if not isinstance(msg, str) or not msg.strip():
        problems.append("no message")
    elif expected not in msg:
        problems.append("the message does not say %r" % expected)
    if "Traceback" in text:
        problems.append("a traceback in the result")
    if any(s in text for s in world["secrets"]):
        problems.append("a key or passphrase leaked into the result")
    report = "\n".join(problems + ["result: " + text])
    for s in world["secrets"]:
        report = report.replace(s, "<secret>")
    assert not problems, report


# -- check mode: a real change asked for, planned, and nothing touched ----------------------------

def check(module, what, args, changes=True):
    return pytest.param(module, args, changes, id="%s-%s" % (module, what))


CHECK_CASES = [
    check("encryption_key", "new-key-file", lambda w: {"path": sp(w, "bvhx-new.hex")}),
    check("integrity_device", "format-a-blank-device",
          lambda w: {"device": w["dev"]["victim"], "name": PREFIX + "ck", "wipe": "none"}),
    check("loop_device", "new-file-attached", lambda w: {"file": sp(w, "bvhx-new.img"), "size": "8M"}),
    check("luks2_volume", "open", lambda w: {"device": w["dev"]["luks"], "name": LUKS, "state": "opened",
                                             "passphrase": w["luks_pass"]}),
    check("md_array", "create-raid1",
          lambda w: {"name": PREFIX + "md", "level": 1, "devices": [w["dev"]["spare"], w["dev"]["victim"]]}),
    check("systemd_units", "new-directory-and-file",
          lambda w: {"directories": [{"path": sp(w, "bvhx-ck")}],
                     "files": [{"path": sp(w, "bvhx-ck", "bvhx.sh"), "content": "#!/bin/sh\n", "mode": "0755"}],
                     "verify": False, "systemd": "never"}),
    check("zfs_bookmark", "new-bookmark", {"snapshot": POOL + "/plain@s2", "bookmark": "ck"}),
    check("zfs_dataset", "new-dataset", {"name": POOL + "/" + PREFIX + "ck"}),
    check("zfs_info", "read-only", {"name": POOL}, changes=False),
    check("zfs_key", "load", lambda w: {"name": POOL + "/enc", "state": "loaded", "key_file": w["right_file"]}),
    check("zfs_pool", "create-on-a-blank-device",
          lambda w: {"name": PREFIX + "ck", "vdevs": [{"devices": [w["dev"]["spare"]]}]}),
    check("zfs_prune", "keep-one", {"name": POOL + "/plain", "keep_last": 1}),
    check("zfs_replicate", "seed", {"source": POOL + "/plain", "target": POOL + "/" + PREFIX + "rep"}),
    check("zfs_stream", "export-a-group-to-a-directory",
          lambda w: {"state": "exported", "dataset": POOL + "/enc", "directory": w["scratch"],
                     "target_id": "site-b", "recipients": [w["recipient"]],
                     "signing_key": w["signing_key"]}),
    check("zfs_migrate", "copy-plain-under-enc",
          lambda w: {"datasets": [POOL + "/plain"], "root": POOL + "/enc", "key_file": w["right_file"]}),
    check("zfs_snapshot", "new-snapshot", {"name": POOL + "/plain@ck"}),
    check("zfs_verify", "with-the-key", lambda w: {"name": POOL + "/enc", "key_file": w["right_file"]},
          changes=None),
]


@pytest.mark.parametrize("name,args,changes", CHECK_CASES)
def test_check_mode_plans_a_real_change_and_touches_nothing(module, world, name, args, changes):
    args = args(world) if callable(args) else args
    before = state(world)
    res = module(name, args, check=True)
    after = state(world)
    problems = ["the system changed: " + c for c in _changes(before, after)]
    if res.failed:
        problems.append("the module failed: %s" % res.get("msg"))
    elif changes is not None and res.get("changed") is not changes:
        problems.append("changed is %r, not %r" % (res.get("changed"), changes))
    report = "\n".join(problems + ["result: " + str(res)])
    for s in world["secrets"]:
        report = report.replace(s, "<secret>")
    assert not problems, report
