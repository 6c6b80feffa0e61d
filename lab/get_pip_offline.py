"""Stand-in for ansible-test's pip bootstrap script (get-pip-<version>.py).

ansible-test --venv downloads get-pip from ci-files.testing.ansible.com, which this workplace
cannot reach; only PyPI is. lab/install.sh puts this file where ansible-test caches that
script. It bootstraps pip from the interpreter's own ensurepip, then installs the exact pip
(and options) ansible-test asked for from PyPI, as get-pip would.
"""
import subprocess
import sys

BOOTSTRAP_ONLY = ("--no-setuptools", "--no-wheel")

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                      stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in BOOTSTRAP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
