"""Every playbook a user or a Molecule scenario runs parses (ansible-playbook --syntax-check, all
in one process, ~1 s): a quoting slip in a shell task fails here, not 20 minutes into the lab."""

import glob
import os
import subprocess
import sys

import ansible_collections

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_playbook_and_scenario_parses():
    files = sorted(glob.glob(os.path.join(TOP, "playbooks", "*.yml"))
                   + glob.glob(os.path.join(TOP, "extensions", "molecule", "*", "*.yml")))
    files = [f for f in files if os.path.basename(f) not in ("molecule.yml", "vars.yml", "config.yml")]
    assert len(files) > 20
    collections = os.path.dirname(list(ansible_collections.__path__)[0])
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "localhost,"] + files,
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
