"""md_array's module layer on the host: check mode and input errors.

``mdadm`` and ``blkid`` are stand-in scripts that log their argv; member paths are accepted as
block devices by a stub. Everything that changes the kernel's state is tested in
tests/integration inside the lab VM.
"""

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.block import device as blockdev
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.tests.run_module import run_module

DEVS = ["/dev/fake0", "/dev/fake1", "/dev/fake2"]


@pytest.fixture
def tools(fake_tools, monkeypatch):
    def fake(path, what="device"):
        if not path.startswith("/dev/fake"):
            raise Refusal("%s %s does not exist" % (what, path))
        return path
    monkeypatch.setattr(blockdev, "require_block_device", fake)
    monkeypatch.setattr(blockdev, "holders", lambda dev, sysfs=None: [])
    return fake_tools({"mdadm": "", "blkid": ""})


def test_check_mode_plans_a_create_without_running_mdadm(tools):
    r = run_module("md_array", {"name": "bvunit-r5", "level": 5, "devices": DEVS,
                                "assume_clean": True}, check=True, diff=True)
    assert not r.failed, r
    assert r["changed"] and [a["action"] for a in r["actions"]] == ["create"]
    assert r["actions"][0]["command"] == (
        "mdadm --create /dev/md/bvunit-r5 --run --homehost=any --level=5 --raid-devices=3 "
        "--metadata=1.2 --assume-clean /dev/fake0 /dev/fake1 /dev/fake2")
    assert r["device"] == "/dev/md/bvunit-r5" and r["uuid"] is None
    assert r["diff"]["before"] == {"state": "absent"} and r["diff"]["after"]["level"] == 5
    assert tools.read_text().splitlines() == ["blkid -p -o export %s" % d for d in DEVS]


@pytest.mark.parametrize("args,message", [
    ({"name": "bvunit", "level": 5, "devices": DEVS[:2]}, "RAID5 needs at least 3 devices"),
    ({"name": "bvunit", "level": 1, "devices": [DEVS[0], DEVS[1], DEVS[0]]}, "more than once"),
    ({"name": "bvunit", "level": 1, "devices": [DEVS[0], "/dev/nonexistent"]}, "does not exist"),
    ({"name": "bvunit", "level": 1, "devices": DEVS[:2], "chunk": "64K"}, "chunk does not apply"),
    ({"name": "bvunit", "level": 4, "devices": DEVS}, "value of level must be one of"),
    ({"name": "bv/unit", "level": 1, "devices": DEVS[:2]}, "not an md array name"),
    ({"name": "bvunit", "state": "stopped", "action": "check"}, "need a running array"),
    ({"level": 1, "devices": DEVS[:2]}, "missing required arguments: name"),
])
def test_bad_input_fails_before_any_command(tools, args, message):
    r = run_module("md_array", args)
    assert r.failed and message in r["msg"], r
    assert "Traceback" not in r["msg"]
    assert tools.read_text() == ""
