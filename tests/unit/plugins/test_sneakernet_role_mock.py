"""The sneakernet role's task flow on the host, against fake ZFS modules (no VM, no ZFS).

The real outcomes are proven in the lab VM by the Molecule scenarios; this test keeps the
role's wiring honest in seconds: which modules run in which order with which arguments, that
check mode runs only the carrier's import and restoring export for real, that the import/export
pair is not reported as a change, and that a child-only source is refused before any module
touches the carrier. Opt-in (BV_ROLE_MOCK=1): two ansible-playbook runs exceed the unit
phase's budget on a busy host.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIX = os.path.join(TOP, "tests", "unit", "fixtures", "sneakernet_mock")
FAKED = ("zfs_pool", "zfs_info", "zfs_snapshot", "zfs_replicate", "zfs_verify", "zfs_prune")
BIN = os.path.dirname(sys.executable)


def _collection(tmp_path):
    coll = tmp_path / "ansible_collections" / "blindvault" / "storage"
    (coll / "plugins" / "modules").mkdir(parents=True)
    for sub in ("roles", "meta"):
        os.symlink(os.path.join(TOP, sub), coll / sub)
    os.symlink(os.path.join(TOP, "plugins", "filter"), coll / "plugins" / "filter")
    with open(os.path.join(FIX, "fake_module.py")) as f:
        text = f.read()
    for name in FAKED:
        (coll / "plugins" / "modules" / (name + ".py")).write_text(
            text.replace("@NAME@", name).replace("@STATE@", str(tmp_path)))
    return tmp_path


def _run(tmp_path, *extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               PATH=BIN + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           os.path.join(FIX, "play.yml")] + list(extra),
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    calls = []
    log = tmp_path / "calls.log"
    if log.exists():
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        log.unlink()
    return proc, calls


@pytest.fixture
def mock(tmp_path):
    if os.environ.get("BV_ROLE_MOCK") != "1":
        pytest.skip("about 30 s of ansible-playbook runs: BV_ROLE_MOCK=1 runs it")
    if not os.path.exists(os.path.join(BIN, "ansible-playbook")):
        pytest.skip("ansible-playbook is not installed next to this python")
    yield _collection(tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)


def _order(calls):
    return [c["module"] for c in calls]


def test_depart_arrive_and_refusal(mock):
    proc, calls = _run(mock)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    depart, arrive, refused = calls[:8], calls[8:13], calls[13:]
    assert _order(depart) == ["zfs_pool", "zfs_info", "zfs_snapshot", "zfs_replicate", "zfs_info",
                              "zfs_verify", "zfs_prune", "zfs_pool"]
    snap = depart[2]["args"]["snapshots"][0]["name"].split("@")[1]
    assert snap.startswith("trip-") and "-k" in snap
    assert depart[3]["args"]["snapshot"] == snap
    assert depart[5]["args"]["keys"] == [{"encryptionroot": "car/vault", "key_file": "/k"}]
    assert depart[6]["args"]["targets"] == ["car/vault"] and depart[6]["args"]["match"] == "trip-*"
    assert depart[7]["args"]["state"] == "exported"
    # arrive: no snapshot, a relay; no key, no verify, no prune
    assert _order(arrive) == ["zfs_pool", "zfs_info", "zfs_replicate", "zfs_info", "zfs_pool"]
    assert "snapshot" not in arrive[2]["args"]
    # a child-only departure: the carrier is attached, the tree read, then refused (R1);
    # the carrier is put back as it came
    assert _order(refused) == ["zfs_pool", "zfs_info", "zfs_pool"]
    assert "REFUSED: sneakernet refused before anything was sent: sa/vault/docs is a member" in proc.stdout
    assert "safety rule R1" in proc.stdout
    assert "car/vault/docs  full    (stream)   ok" in proc.stdout


def test_check_mode_imports_and_restores_for_real_only(mock):
    proc, calls = _run(mock, "--check")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    real = [(c["module"], c["args"].get("state")) for c in calls if not c["check"]]
    assert real == [("zfs_pool", "imported"), ("zfs_pool", "exported")] * 3
    assert not any(c["module"] == "zfs_verify" for c in calls)  # nothing was sent to read
    assert "planned" in proc.stdout
