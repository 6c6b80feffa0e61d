"""No secret ever reaches argv or Ansible's output, through the public interface (-vvv)."""

import os
import secrets
import subprocess


def test_keys_never_in_argv_or_verbose_output(zpool, exec_log):
    hex_key = secrets.token_hex(32)
    new_pass = "pass-" + secrets.token_hex(12)
    env = dict(os.environ, BV_POOL=zpool["name"], BV_HEX_KEY=hex_key, BV_NEW_PASS=new_pass)
    proc = subprocess.run(
        ["ansible-playbook", "-vvv", "-i", "localhost,", "-c", "local",
         os.path.join(os.environ["BV_TOP"], "tests/integration/playbooks/secrets.yml")],
        env=env, text=True, capture_output=True, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert hex_key not in output and new_pass not in output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # the masking was exercised
    calls = exec_log("zfs")
    assert any("change-key" in c for c in calls) and any("load-key" in c for c in calls)
    assert not [c for c in exec_log() if hex_key in c or new_pass in c]
