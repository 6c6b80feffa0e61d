"""No secret ever reaches argv, Ansible's output, a module's result or a carrier's bytes.

* ``-vvv``: one playbook through the public interface passes keys to every module option that
  takes one (zfs_dataset, zfs_key, zfs_verify, luks2_volume) and greps the whole output.
* The whole run: ``make test`` runs the integration suite under
  ``strace -f --seccomp-bpf -e trace=execve`` (lab/test.sh), every process of every test and
  Molecule scenario included; the last test of the run reads that trace and fails if any argv
  held any secret the suite used (secrets_guard.py collects them). Module results are checked
  as each test runs (conftest.module); carrier bytes in test_zfs_replicate.
"""

import os
import secrets
import subprocess

import pytest

import secrets_guard


def test_keys_never_in_argv_or_verbose_output(zpool, disks, exec_log):
    hex_key = secrets_guard.register(secrets.token_hex(32))
    new_pass = secrets_guard.register("pass-" + secrets.token_hex(12))
    luks_pass = secrets_guard.register("luks-" + secrets.token_hex(12))
    luks_extra = secrets_guard.register("extra-" + secrets.token_hex(12))
    env = dict(os.environ, BV_POOL=zpool["name"], BV_HEX_KEY=hex_key, BV_NEW_PASS=new_pass,
               BV_DISK=disks(1)[0], BV_LUKS_PASS=luks_pass, BV_LUKS_EXTRA=luks_extra)
    proc = subprocess.run(
        ["ansible-playbook", "-vvv", "-i", "localhost,", "-c", "local",
         os.path.join(os.environ["BV_TOP"], "tests/integration/playbooks/secrets.yml")],
        env=env, text=True, capture_output=True, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert not secrets_guard.leaks_in(output, {hex_key, new_pass, luks_pass, luks_extra})
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # the masking was exercised
    calls = exec_log()
    assert any("change-key" in c for c in calls) and any("load-key" in c for c in calls)
    assert any("luksAddKey" in c for c in calls) and any("luksRemoveKey" in c for c in calls)
    assert not [c for c in calls if secrets_guard.leaks_in(c, {hex_key, new_pass, luks_pass, luks_extra})]


MOLECULE_DIR = "/tmp/molecule"


@pytest.mark.after_all
def test_no_secret_of_the_whole_run_reached_any_argv_or_log(request):
    trace = os.environ.get("BV_EXEC_TRACE")
    if not trace or not os.path.isfile(trace):
        pytest.skip("no execve trace: make test runs the suite under strace (lab/test.sh) "
                    "and names it in BV_EXEC_TRACE")
    secrets_guard.register_key_files(MOLECULE_DIR)  # the scenarios' keys (made in Molecule)
    known = secrets_guard.known()
    # the trace is live: a canary proves this reading of it finds what is there
    canary = "canary-" + secrets.token_hex(16)
    subprocess.run(["/bin/true", "--key=" + canary], check=True)
    found, count = secrets_guard.argv_leaks(trace, known | {canary})
    assert [f for f in found if f[2] == secrets_guard.mask(canary)], \
        "the canary's execve is not in %s: the trace does not see every process" % trace
    leaks = [f for f in found if f[2] != secrets_guard.mask(canary)]
    assert not leaks, "key material in argv (pid, program, secret): %s" % leaks[:20]
    cut = [pid for pid, _path, argv in secrets_guard.execs(trace) if secrets_guard.truncated(argv)]
    assert not cut, "argv strings longer than strace's -s were cut (pids %s): raise -s" % cut[:10]
    molecule_log = os.path.join(os.environ["BV_TOP"], "tests", "output", "molecule.log")
    if os.path.isfile(molecule_log):
        with open(molecule_log, errors="replace") as f:
            leaked = secrets_guard.leaks_in(f.read(), known)
        assert not leaked, "key material in %s: %s" % (molecule_log, [secrets_guard.mask(s) for s in leaked])
    print("secrets guard: %d execve checked against %d secrets" % (count, len(known)))
