"""Every role's Molecule scenario, inside the lab VM, in the suite's one VM boot.

All selected scenarios run in ONE `molecule test` (Molecule's own start-up costs ~35 s in the
VM), two at a time (BV_MOLECULE_WORKERS); each scenario is one test here, judged by Molecule's
SCENARIO RECAP. Scenarios therefore use names (pools, dm, md, files) of their own.

Scenarios live in ``extensions/molecule/<name>/`` (Molecule's collection layout, shared
settings in ``extensions/molecule/config.yml``). Each runs its own test sequence (converge,
idempotence, verify; negative scenarios their own) through the real ``molecule`` command
against localhost. A scenario whose molecule.yml has the line ``# blindvault: full-only``
runs only under ``make test-full`` (BV_FULL=1).

At the end of the session everything the scenarios left in the kernel (pools, md arrays, dm
mappings, loop devices) is taken down, top first (the fixture is session-scoped: later test
files run beside the scenarios' leftovers, which use names of their own).
"""

import os
import re
import subprocess

import pytest

from helpers import sh

TOP = os.environ.get("BV_TOP", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROOT = os.path.join(TOP, "extensions", "molecule")
FULL = os.environ.get("BV_FULL") == "1"
TIMEOUT = int(os.environ.get("BV_MOLECULE_TIMEOUT", "2400"))


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


def _recap(text):
    """Per scenario, the counts of Molecule's SCENARIO RECAP (actions, successful, failed...)."""
    found = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", text.split("SCENARIO RECAP")[-1], re.M):
        found[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return found


@pytest.fixture(scope="session")
def molecule_results(request):
    """One `molecule test` for every selected scenario (Molecule starts once: ~35 s in the VM),
    BV_MOLECULE_WORKERS at a time (default 2, the VM's CPUs); then everything they left is
    taken down. Returns (recap per scenario, log path, log text)."""
    names = []
    for item in request.session.items:
        if getattr(item, "originalname", "") == "test_molecule_scenario" and not item.get_closest_marker("skip"):
            names.append(item.callspec.params["scenario"])
    log_dir = os.path.join(TOP, "tests", "output")
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, "molecule.log")
    before = _state()
    argv = ["molecule", "test", "--continue-on-failure", "--report"]
    workers = int(os.environ.get("BV_MOLECULE_WORKERS", "2"))
    if workers > 1 and len(names) > 1:
        argv += ["--workers", str(workers)]
    for name in names:
        # The scenario's scratch directory for loop files, keys and fixtures (saves every
        # scenario a task; a scenario run by hand needs it too: mkdir -p /tmp/molecule/NAME).
        os.makedirs("/tmp/molecule/" + name, exist_ok=True)
        argv += ["-s", name]
    env = dict(os.environ, PY_COLORS="0", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    try:
        with open(log_path, "w") as log:
            subprocess.run(argv, cwd=TOP, env=env, stdout=log, stderr=subprocess.STDOUT,
                           timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        with open(log_path, "a") as log:
            log.write("\nblindvault: molecule killed after %d s\n" % TIMEOUT)
    with open(log_path) as f:
        text = f.read()
    yield _recap(text), log_path, text
    _teardown_new(before)
    for name in names:
        sh("rm", "-rf", "/tmp/molecule/" + name, check=False)


@pytest.mark.parametrize("scenario", _scenarios())
def test_molecule_scenario(scenario, molecule_results):
    recap, log_path, text = molecule_results
    got = recap.get(scenario)
    ok = got is not None and got.get("failed", 1) == 0 and got.get("successful", 0) > 0
    if not ok:
        marker = "Failed: %s" % scenario
        at = text.find(marker)
        excerpt = text[at:at + 8000] if at >= 0 else text[-8000:]
        pytest.fail("molecule scenario %s: %s (log %s):\n%s" % (scenario, got or "no result", log_path, excerpt))
