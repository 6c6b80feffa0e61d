"""docs/modules/*.md, docs/roles/*.md and docs/reference.md are generated from the collection's
own documentation (lab/docs.py): they must match it, or a reader sees stale options."""

import os
import subprocess
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(TOP, "lab", "docs.py")


@pytest.mark.skipif(not os.path.exists(SCRIPT), reason="lab/ is not part of the built collection")
def test_generated_docs_are_current():
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([sys.executable, SCRIPT, "--check"], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr) + "\nrun: make docs"
