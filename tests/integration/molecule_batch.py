"""The Molecule batch of the integration suite: every selected scenario in ONE `molecule test`,
started in the background as soon as pytest has collected (conftest.py), so the scenarios run
beside the pytest cases in the same VM boot; their tests are ordered last and wait for it.

Why concurrently: the VM's work is CPU-bound (an Ansible task is ~7 s of Python start-up and
imports under TCG) and pytest alone keeps about one of its two CPUs busy; Molecule's two
workers and pytest share both. Scenarios and tests use names of their own (pools, dm, md,
files), so they do not meet.

Settings (environment): BV_MOLECULE_WORKERS (default 2), BV_MOLECULE_TIMEOUT (seconds from the
start, default 4800: a guard against a hung scenario, not a budget), BV_MOLECULE_SERIAL=1 (run the batch only when the scenario tests are
reached, alone: the old behaviour, for debugging).
"""

import os
import re
import signal
import subprocess
import time

import pytest

from helpers import sh

TOP = os.environ.get("BV_TOP", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROOT = os.path.join(TOP, "extensions", "molecule")
LOG = os.path.join(TOP, "tests", "output", "molecule.log")
FULL_ONLY = "# blindvault: full-only"
# "# blindvault: minutes N": how long the scenario takes alone in the lab VM. The batch starts the
# longest first, so two workers finish together instead of one running the longest at the end.
MINUTES = re.compile(r"^# blindvault: minutes (\d+)", re.M)
TEST_NAME = "test_molecule_scenario"


def plan(config, items):
    """Called by conftest once collection is done: the scenario tests go last, and their one
    batch is stashed on ``config`` and (unless BV_MOLECULE_SERIAL=1) started now."""
    mine = [i for i in items if getattr(i, "originalname", "") == TEST_NAME]
    items[:] = [i for i in items if i not in mine] + mine
    names = [i.callspec.params["scenario"] for i in mine if not i.get_closest_marker("skip")]
    batch = Batch(sorted(names, key=lambda n: -minutes(n)))
    config.stash[STASH] = batch
    if os.environ.get("BV_MOLECULE_SERIAL") != "1":
        batch.start()


def finish(config):
    """Called by conftest when the session ends."""
    batch = config.stash.get(STASH, None)
    if batch is not None:
        batch.finish()


def scenarios():
    """(name, full_only) for every scenario directory, sorted."""
    found = []
    for name in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, name, "molecule.yml")
        if os.path.isfile(path):
            with open(path) as f:
                found.append((name, FULL_ONLY in f.read()))
    return found


def minutes(name):
    """The scenario's ``# blindvault: minutes N`` (0 when it does not say)."""
    with open(os.path.join(ROOT, name, "molecule.yml")) as f:
        m = MINUTES.search(f.read())
    return int(m.group(1)) if m else 0


def kernel_state():
    """Pools, dm mappings, md arrays and loop devices that exist now."""
    pools = set(sh("zpool", "list", "-H", "-o", "name", check=False).stdout.split())
    dms = set(sh("dmsetup", "info", "-c", "--noheadings", "-o", "name", check=False).stdout.split())
    dms.discard("No")  # "No devices found"
    mds = {n for n in os.listdir("/sys/class/block") if n.startswith("md")}
    loops = set(sh("losetup", "--noheadings", "--output", "NAME", check=False).stdout.split())
    return pools, dms, mds, loops


def teardown_new(before):
    """Destroy what appeared since ``before``: pools, md arrays and dm mappings in rounds
    (a pool may sit on a dm device on a zvol of another pool), then loop devices."""
    sh("udevadm", "settle", check=False)
    for _round in range(4):
        pools, dms, mds, _loops = kernel_state()
        if not ((pools - before[0]) | (dms - before[1]) | (mds - before[2])):
            break
        for pool in sorted(pools - before[0]):
            sh("zpool", "destroy", "-f", pool, check=False)
        for md in sorted(mds - before[2]):
            sh("mdadm", "--stop", "/dev/" + md, check=False)
        for dm in sorted(dms - before[1]):
            sh("dmsetup", "remove", "--retry", dm, check=False)
        sh("udevadm", "settle", check=False)
    for loop in sorted(kernel_state()[3] - before[3]):
        sh("losetup", "--detach", loop, check=False)


def recap(text):
    """Per scenario, the counts of Molecule's SCENARIO RECAP (actions, successful, failed...)."""
    found = {}
    # a name as wide as the column leaves no space before the colon
    for m in re.finditer(r"^([^\s:]+)\s*:\s+((?:\w+=\d+\s*)+)$", text.split("SCENARIO RECAP")[-1], re.M):
        found[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return found


class Batch:
    """One `molecule test` over ``names``: start() returns at once, results() waits."""

    def __init__(self, names):
        self.names = list(names)
        self.workers = int(os.environ.get("BV_MOLECULE_WORKERS", "2"))
        self.timeout = int(os.environ.get("BV_MOLECULE_TIMEOUT", "4800"))
        self.proc = None
        self.started = None
        self.before = None
        self._log = None
        self._results = None

    def argv(self):
        argv = ["molecule", "test", "--continue-on-failure", "--report"]
        if self.workers > 1 and len(self.names) > 1:
            argv += ["--workers", str(self.workers)]
        for name in self.names:
            argv += ["-s", name]
        return argv

    def start(self):
        if self.proc is not None or not self.names:
            return
        self.before = kernel_state()
        for name in self.names:
            # The scenario's scratch directory for loop files, keys and fixtures (saves every
            # scenario a task; a scenario run by hand needs it too: mkdir -p /tmp/molecule/NAME).
            os.makedirs("/tmp/molecule/" + name, exist_ok=True)
        os.makedirs(os.path.dirname(LOG), exist_ok=True)
        self._log = open(LOG, "w")
        env = dict(os.environ, PY_COLORS="0", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv(), cwd=TOP, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def results(self):
        """Wait for the batch (at most the rest of its timeout); (recap, log path, log text)."""
        if self._results is None:
            self.start()
            left = max(1, self.timeout - (time.monotonic() - self.started))
            note = ""
            try:
                self.proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                self.kill()
                note = "\nblindvault: molecule killed after %d s\n" % self.timeout
            took = time.monotonic() - self.started
            self._log.write("%s\nblindvault: molecule batch (%s) took %.0f s\n" % (note, " ".join(self.names), took))
            self._log.close()
            with open(LOG) as f:
                text = f.read()
            self._results = (recap(text), LOG, text)
        return self._results

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def finish(self):
        """Stop the batch if still running; take down everything the scenarios left."""
        if self.proc is None:
            return
        self.kill()
        if self._log is not None and not self._log.closed:
            self._log.close()
        teardown_new(self.before)
        for name in self.names:
            sh("rm", "-rf", "/tmp/molecule/" + name, check=False)


STASH = pytest.StashKey[Batch]()
