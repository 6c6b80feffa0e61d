"""The integrity_raid role's md-check script against a fake sysfs tree (no md needed).

A thread plays md: when the script writes "check" to sync_action it sets the counters the
test asked for and goes back to "idle".
"""

import os
import subprocess
import threading
import time

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(TOP, "roles", "integrity_raid", "files", "md-check")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def fake_md(tmp_path):
    md = tmp_path / "sys" / "block" / "md127" / "md"
    for member in ("dm-0", "dm-1"):
        (md / ("dev-" + member)).mkdir(parents=True)
        _write(md / ("dev-" + member) / "errors", "0\n")
        _write(md / ("dev-" + member) / "state", "in_sync\n")
    _write(md / "sync_action", "idle\n")
    _write(md / "mismatch_cnt", "0\n")
    _write(md / "degraded", "0\n")
    (tmp_path / "dev" / "md").mkdir(parents=True)
    os.symlink("/dev/md127", str(tmp_path / "dev" / "md" / "vault"))
    return tmp_path, md


def _run(tmp_path, md, after_check):
    """Run md-check; when it starts a check, apply after_check (path -> text) and go idle."""
    stop = threading.Event()

    def play_md():
        while not stop.is_set():
            if (md / "sync_action").read_text().strip() == "check":
                for rel, text in after_check.items():
                    _write(md / rel, text)
                _write(md / "sync_action", "idle\n")
            time.sleep(0.05)

    thread = threading.Thread(target=play_md)
    thread.start()
    try:
        env = dict(os.environ, BV_MD_CHECK_SYSFS=str(tmp_path / "sys"), BV_MD_CHECK_POLL="1",
                   BV_MD_CHECK_TIMEOUT="20")
        proc = subprocess.run(["bash", SCRIPT, str(tmp_path / "dev" / "md" / "vault"), str(tmp_path / "state")],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
    finally:
        stop.set()
        thread.join()
    return proc


def test_clean_array_exits_0(fake_md):
    tmp_path, md = fake_md
    proc = _run(tmp_path, md, {})
    assert proc.returncode == 0, proc.stderr
    assert "mismatch_cnt=0" in proc.stdout
    assert "OK: " in proc.stdout


def test_mismatch_exits_1(fake_md):
    tmp_path, md = fake_md
    proc = _run(tmp_path, md, {"mismatch_cnt": "8\n"})
    assert proc.returncode == 1
    assert "mismatch_cnt=8" in proc.stderr


def test_faulty_member_exits_2(fake_md):
    tmp_path, md = fake_md
    proc = _run(tmp_path, md, {"dev-dm-1/state": "faulty\n", "degraded": "1\n"})
    assert proc.returncode == 2
    assert "degraded or a member is faulty" in proc.stderr


def test_new_errors_exit_3_once(fake_md):
    tmp_path, md = fake_md
    proc = _run(tmp_path, md, {"dev-dm-0/errors": "256\n"})
    assert proc.returncode == 3
    assert "dm-0(+256)" in proc.stderr
    # The counts are cumulative: the next run compares with the previous one and is clean.
    proc = _run(tmp_path, md, {})
    assert proc.returncode == 0, proc.stderr
    assert "errors=256 (previous run: 256)" in proc.stdout


def test_not_an_array_exits_4(tmp_path):
    proc = subprocess.run(["bash", SCRIPT, str(tmp_path / "nothing")], capture_output=True, text=True,
                          env=dict(os.environ, BV_MD_CHECK_SYSFS=str(tmp_path)), check=False)
    assert proc.returncode == 4
    assert "not a running md array" in proc.stderr
