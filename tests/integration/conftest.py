"""Integration tests: pytest inside the lab VM (`make lab CMD='pytest tests/integration'`),
one process per boot, against the real kernel and tools.

``run_module`` calls a module's ``main()`` in-process through ansible-core's
``patch_module_args``: the real module layer (argument spec, check mode, exit_json) at the
cost of a function call instead of ~9 s per Ansible task in the VM. A few tests run real
``ansible-playbook`` to prove the public interface end to end.
"""

import json
import os
import shutil
import tempfile

import pytest

import molecule_batch
import secrets_guard
from helpers import sh

from ansible_collections.blindvault.storage.tests.run_module import run_module

IN_LAB = os.environ.get("BV_IN_LAB") == "1"
FULL = os.environ.get("BV_FULL") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "full: part of the full matrix only (make test-full, BV_FULL=1): "
                                       "a case another test already covers in make test")
    config.addinivalue_line("markers", "after_all: runs after every other test, the Molecule "
                                       "batch's included (a check over the whole run)")


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: the batch starts only what is judged
def pytest_collection_modifyitems(config, items):
    if not IN_LAB:
        skip = pytest.mark.skip(reason="integration tests run inside the lab VM: make lab CMD='pytest tests/integration'")
        for item in items:
            item.add_marker(skip)
        return
    if not FULL:
        skip_full = pytest.mark.skip(reason="full matrix only: make test-full")
        for item in items:
            if item.get_closest_marker("full"):
                item.add_marker(skip_full)
    molecule_batch.plan(config, items)
    last = [i for i in items if i.get_closest_marker("after_all")]
    items[:] = [i for i in items if i not in last] + last


def pytest_sessionfinish(session):
    molecule_batch.finish(session.config)


@pytest.fixture
def module():
    """``module(name, args, check=False, diff=False)``: a module's main() in-process. The
    secrets in its arguments are registered with the suite's secrets guard, and a result that
    contains any secret the suite knows fails the test."""
    def call(name, args, *a, **kw):
        secrets_guard.harvest(args)
        result = run_module(name, args, *a, **kw)
        leaked = secrets_guard.leaks_in(json.dumps(result))
        assert not leaked, "%s returned key material: %s" % (
            name, ", ".join(secrets_guard.mask(s) for s in leaked))
        return result
    return call


def _make_fs(fstype, root):
    img = os.path.join(root, fstype + ".img")
    mnt = os.path.join(root, fstype)
    os.makedirs(mnt)
    with open(img, "wb") as f:
        f.truncate(320 << 20)  # xfs wants 300 MiB
    mkfs = {"ext4": ["mkfs.ext4", "-q", "-F"], "btrfs": ["mkfs.btrfs", "-q", "-f"],
            "xfs": ["mkfs.xfs", "-q", "-f"]}[fstype]
    sh(*mkfs, img)
    sh("mount", "-o", "loop", img, mnt)
    return mnt


@pytest.fixture(scope="session")
def filesystems():
    """Mounted ext4, btrfs and xfs filesystems (on loop devices) for backing files."""
    root = tempfile.mkdtemp(prefix="bvfs-", dir="/tmp")
    mounts = {fs: _make_fs(fs, root) for fs in ("ext4", "btrfs", "xfs")}
    yield mounts
    for mnt in mounts.values():
        sh("umount", mnt, check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scratch(filesystems, request):
    """Per-test directories on each filesystem; loop devices of files there are detached after."""
    dirs = {}
    for fs, mnt in filesystems.items():
        d = os.path.join(mnt, request.node.name[:60])
        os.makedirs(d)
        dirs[fs] = d
    yield dirs
    for d in dirs.values():
        for name in os.listdir(d):
            for dev in sh("losetup", "--noheadings", "--output", "NAME", "--associated",
                          os.path.join(d, name), check=False).stdout.split():
                sh("losetup", "--detach", dev, check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def exec_log(tmp_path, monkeypatch):
    """Log every storage tool the code under test starts (argv included), via PATH shims.

    Returns a function giving the logged command lines, optionally only those of one tool.
    Used to count processes and to prove no secret ever reaches argv.
    """
    bindir = tmp_path / "shims"
    bindir.mkdir()
    log = tmp_path / "exec.log"
    log.touch()
    for tool in ("zfs", "zpool", "losetup", "cryptsetup", "integritysetup", "mdadm", "dmsetup",
                 "age"):
        real = shutil.which(tool)
        if real is None:
            continue
        shim = bindir / tool
        shim.write_text('#!/bin/sh\nprintf "%%s\\n" "%s $*" >> "%s"\nexec "%s" "$@"\n'
                        % (tool, log, real))
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))

    def lines(tool=None):
        got = log.read_text().splitlines()
        return [l for l in got if tool is None or l.split(" ", 1)[0] == tool]

    return lines


@pytest.fixture(scope="session")
def zfs_lab():
    """Two pools on file vdevs (source and replica) with the key-change cases built once."""
    from zfs_scenarios import destroy_pool, keychange_replicas, make_pool
    root = tempfile.mkdtemp(prefix="bvzfs-", dir="/tmp")
    keydir = os.path.join(root, "keys")
    os.makedirs(keydir)
    src, dst = make_pool(root, "bvsrc", "256M"), make_pool(root, "bvdst", "256M")
    try:
        keys = keychange_replicas(src, dst, keydir)
        yield {"root": root, "src": src, "dst": dst, "keys": keys, "keydir": keydir}
    finally:
        destroy_pool(src)
        destroy_pool(dst)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def zpool():
    """A scratch pool on a file vdev for module tests; each test works under its own dataset."""
    from zfs_scenarios import destroy_pool, make_pool
    root = tempfile.mkdtemp(prefix="bvpool-", dir="/tmp")
    name = make_pool(root, "bvds", "256M")
    try:
        yield {"name": name, "root": root}
    finally:
        destroy_pool(name)
        shutil.rmtree(root, ignore_errors=True)


def _release(kname):
    """Take down whatever is stacked on kernel device ``kname`` (md arrays, dm mappings),
    top first, so that the device under it can be detached."""
    holders_dir = "/sys/class/block/%s/holders" % kname
    for holder in (os.listdir(holders_dir) if os.path.isdir(holders_dir) else []):
        _release(holder)
        if holder.startswith("md"):
            sh("mdadm", "--stop", "/dev/" + holder, check=False)
        elif holder.startswith("dm-"):
            with open("/sys/class/block/%s/dm/name" % holder) as f:
                sh("dmsetup", "remove", "--retry", f.read().strip(), check=False)


@pytest.fixture
def disks(tmp_path):
    """Factory of scratch disks: ``disks(3)`` -> three loop devices over 64 MiB sparse files
    (``disks.files[dev]`` is the backing file, for corrupting it underneath). Everything
    stacked on them (dm mappings, md arrays) is taken down and the devices detached after."""
    made = {}

    def make(count=1, size=64 << 20):
        devs = []
        for _i in range(count):
            path = str(tmp_path / ("disk%d.img" % len(made)))
            with open(path, "wb") as f:
                f.truncate(size)
            dev = sh("losetup", "--find", "--show", path).stdout.strip()
            made[dev] = path
            devs.append(dev)
        return devs

    make.files = made
    yield make
    sh("udevadm", "settle", check=False)
    for dev in made:
        _release(os.path.basename(dev))
    for dev in made:
        sh("losetup", "--detach", dev, check=False)
