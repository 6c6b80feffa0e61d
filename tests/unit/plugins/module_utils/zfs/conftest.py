"""Fixtures shared by the zfs_stream tests: a stand-in zfs on PATH, age and signing keys."""

import os
import shutil
import subprocess

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.runner import Runner
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import stream

FAKE_ZFS = """#!/bin/sh
log="$FAKE_ZFS_DIR/log"
echo "$*" >> "$log"
case "$1" in
  send) printf 'stream of %s\\n' "$*"; head -c 200000 /dev/zero ;;
  recv) for last; do :; done; cat > "$FAKE_ZFS_DIR/recv-$(echo "$last" | tr / %)" ;;
  program) cat > /dev/null; echo '{"return": {}}' ;;
  snapshot|bookmark) ;;
  *) echo "fake zfs: unexpected $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    if not (shutil.which("age-keygen") and shutil.which("openssl")):
        pytest.skip("age-keygen and openssl are needed")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "zfs").write_text(FAKE_ZFS)
    (bindir / "zfs").chmod(0o755)
    (bindir / "zpool").write_text("#!/bin/sh\necho \"zpool $*\" >> \"$FAKE_ZFS_DIR/zpool.log\"\n")
    (bindir / "zpool").chmod(0o755)
    monkeypatch.setenv("FAKE_ZFS_DIR", str(tmp_path))
    out = subprocess.run(["age-keygen", "-o", str(tmp_path / "id")], capture_output=True, text=True, check=True)
    rcpt = [w for w in out.stderr.split() if w.startswith("age1")][0]
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(tmp_path / "k.pem")], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "k.pem"), "-pubout", "-out", str(tmp_path / "k.pub")],
                   check=True)
    (tmp_path / "carrier").mkdir()
    trees = {}
    monkeypatch.setattr(stream, "read_tree", lambda runner, names, **kw: trees[names[0]].pop(0))
    return dict(tmp=tmp_path, rcpt=rcpt, trees=trees,
                runner=lambda check=False: Runner(check_mode=check, path=str(bindir) + os.pathsep + "/usr/bin:/bin"))
