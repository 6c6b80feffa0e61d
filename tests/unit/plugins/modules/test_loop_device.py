"""loop_device's module layer on the host: check mode and input errors.

``losetup`` is a stand-in script printing output recorded from the real tool in the lab;
it logs its argv so the tests see exactly which commands the module started. Everything that
changes the kernel's state is tested in tests/integration inside the lab VM.
"""

import pytest

from ansible_collections.blindvault.storage.tests.run_module import run_module


@pytest.fixture
def losetup(fake_tools, fixture_text):
    return fake_tools({"losetup": fixture_text("losetup-none.json")})


def test_check_mode_plans_without_touching_anything(losetup, tmp_path):
    f = tmp_path / "d.img"
    r = run_module("loop_device", {"file": str(f), "size": "64M"}, check=True, diff=True)
    assert not r.failed, r
    assert r["changed"] and r["device"] is None
    assert [a["action"] for a in r["actions"]] == ["create-file", "attach"]
    assert r["actions"][1]["command"].startswith("losetup --find --show --direct-io=")
    assert r["diff"]["before"] == {"state": "absent"} and r["diff"]["after"]["size"] == 64 << 20
    assert not f.exists()
    # One read of the state, nothing else.
    assert losetup.read_text().splitlines() == [
        "losetup --list --json --output NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN,RO,DIO,LOG-SEC,"
        "OFFSET,SIZELIMIT,AUTOCLEAR"]


def test_list_form_reads_state_once(losetup, tmp_path):
    devices = [{"file": str(tmp_path / ("m%d.img" % i))} for i in range(20)]
    r = run_module("loop_device", {"size": "8M", "devices": devices}, check=True)
    assert r["changed"] and len(r["devices"]) == 20
    assert len(losetup.read_text().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    ({"file": "relative.img", "size": "8M"}, "absolute path"),
    ({"file": "/x.img", "size": "lots"}, "not a size"),
    ({"file": "/x.img", "state": "absent", "size": "8M"}, "size only applies"),
    ({"devices": [{"size": "8M"}]}, "devices[0]: missing required arguments: file"),
    ({"devices": [{"file": "/x.img", "direct_io": "maybe"}]}, "direct_io must be one of: auto, on, off, got: maybe found in devices"),
    ({"file": "/x.img", "devices": []}, "mutually exclusive"),
])
def test_bad_input_fails_before_any_command(losetup, args, message):
    r = run_module("loop_device", args)
    assert r.failed and message in r["msg"], r
    assert losetup.read_text() == ""
