"""Every role's Molecule scenario, inside the lab VM, in the suite's one VM boot.

Scenarios live in ``extensions/molecule/<name>/`` (Molecule's collection layout, shared
settings in ``extensions/molecule/config.yml``). Each runs its own test sequence (converge,
idempotence, verify; negative scenarios their own) through the real ``molecule`` command
against localhost. A scenario whose molecule.yml has the line ``# blindvault: full-only``
runs only under ``make test-full`` (BV_FULL=1).

After each scenario everything it left in the kernel (pools, md arrays, dm mappings, loop
devices) is taken down, top first, so scenarios cannot see each other's state.
"""

import os
import subprocess

import pytest

from helpers import sh

TOP = os.environ.get("BV_TOP", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROOT = os.path.join(TOP, "extensions", "molecule")
FULL = os.environ.get("BV_FULL") == "1"
TIMEOUT = int(os.environ.get("BV_MOLECULE_TIMEOUT", "1200"))


def _scenarios():
    found = []
    for name in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, name, "molecule.yml")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            full_only = "# blindvault: full-only" in f.read()
        marks = [pytest.mark.skip(reason="full-only scenario: make test-full")] if full_only and not FULL else []
        found.append(pytest.param(name, marks=marks, id=name))
    return found


def _state():
    pools = set(sh("zpool", "list", "-H", "-o", "name", check=False).stdout.split())
    dms = set(sh("dmsetup", "info", "-c", "--noheadings", "-o", "name", check=False).stdout.split())
    dms.discard("No")  # "No devices found"
    mds = {n for n in os.listdir("/sys/class/block") if n.startswith("md")}
    loops = set(sh("losetup", "--noheadings", "--output", "NAME", check=False).stdout.split())
    return pools, dms, mds, loops


def _teardown_new(before):
    """Destroy what appeared since ``before``: pools, md arrays and dm mappings in rounds
    (a pool may sit on a dm device on a zvol of another pool), then loop devices."""
    sh("udevadm", "settle", check=False)
    for _round in range(4):
        pools, dms, mds, _loops = _state()
        new = (pools - before[0]) | (dms - before[1]) | (mds - before[2])
        if not new:
            break
        for pool in sorted(pools - before[0]):
            sh("zpool", "destroy", "-f", pool, check=False)
        for md in sorted(mds - before[2]):
            sh("mdadm", "--stop", "/dev/" + md, check=False)
        for dm in sorted(dms - before[1]):
            sh("dmsetup", "remove", "--retry", dm, check=False)
        sh("udevadm", "settle", check=False)
    for loop in sorted(_state()[3] - before[3]):
        sh("losetup", "--detach", loop, check=False)


@pytest.mark.parametrize("scenario", _scenarios())
def test_molecule_scenario(scenario):
    log_dir = os.path.join(TOP, "tests", "output")
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, "molecule-%s.log" % scenario)
    before = _state()
    # The scenario's scratch directory for loop files, keys and fixtures (saves every scenario
    # a task; a scenario run by hand needs it too: mkdir -p /tmp/molecule/NAME).
    os.makedirs("/tmp/molecule/" + scenario, exist_ok=True)
    env = dict(os.environ, MOLECULE_NO_LOG="false", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(["molecule", "test", "-s", scenario], cwd=TOP, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT,
                                  check=False)
    finally:
        _teardown_new(before)
        sh("rm", "-rf", "/tmp/molecule/" + scenario, check=False)
    with open(log_path) as f:
        tail = f.read()[-6000:]
    assert proc.returncode == 0, "molecule test -s %s failed (rc=%s); log %s ends:\n%s" % (
        scenario, proc.returncode, log_path, tail)
