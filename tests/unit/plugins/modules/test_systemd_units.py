"""systemd_units on the host: real files in a temporary directory, the real systemd-analyze
when it is installed (it verifies units offline), and stand-in systemctl scripts for the
PID-1 decisions (the lab VM has no systemd as PID 1, so enabling is only ever planned there)."""

import os
import shutil
import stat

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.runner import Runner
from ansible_collections.blindvault.storage.plugins.module_utils.systemd import DirSpec, FileSpec, converge
from ansible_collections.blindvault.storage.tests.run_module import run_module

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")

TIMER = "[Unit]\nDescription=check\n\n[Timer]\nOnCalendar=weekly\n\n[Install]\nWantedBy=timers.target\n"


def service(script):
    return "[Unit]\nDescription=check\n\n[Service]\nType=oneshot\nExecStart=%s\n" % script


def unit_args(tmp_path, **extra):
    libexec, units = tmp_path / "libexec", tmp_path / "units"
    args = {
        "directories": [{"path": str(libexec)}, {"path": str(units)}],
        "files": [
            {"path": str(libexec / "bv-check"), "content": "#!/bin/sh\nexit 0\n", "mode": "0755"},
            {"path": str(units / "bv-check.service"), "content": service(libexec / "bv-check")},
            {"path": str(units / "bv-check.timer"), "content": TIMER},
        ],
        "systemd": "never",
    }
    args.update(extra)
    return args


@needs_analyze
def test_writes_verifies_and_a_second_run_changes_nothing(tmp_path):
    args = unit_args(tmp_path)
    first = run_module("systemd_units", args, diff=True)
    assert not first.failed, first
    assert first["changed"] and first["verified"] is True
    assert [f["created"] for f in first["files"]] == [True, True, True]
    script = tmp_path / "libexec" / "bv-check"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert (tmp_path / "units" / "bv-check.timer").read_text() == TIMER
    assert first["diff"][2]["after"] == TIMER and first["diff"][2]["before"] == ""
    second = run_module("systemd_units", args)
    assert not second.failed and not second["changed"] and second["actions"] == []
    assert second["verified"] is True
    # a mode drifted by hand is put back, the content is left alone
    script.chmod(0o700)
    third = run_module("systemd_units", args)
    assert [a["action"] for a in third["actions"]] == ["chmod"]
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


@needs_analyze
def test_a_unit_that_does_not_verify_never_replaces_the_installed_one(tmp_path):
    args = unit_args(tmp_path)
    assert not run_module("systemd_units", args).failed
    installed = (tmp_path / "units" / "bv-check.service").read_text()
    args["files"][1]["content"] = service("/nonexistent/bv-check")
    bad = run_module("systemd_units", args)
    assert bad.failed and "systemd-analyze verify found problems" in bad["msg"]
    assert "/nonexistent/bv-check" in bad["msg"]
    assert (tmp_path / "units" / "bv-check.service").read_text() == installed
    assert not [p for p in os.listdir(tmp_path / "units") if p.startswith(".blindvault-")]


@needs_analyze
def test_a_failed_check_puts_back_the_scripts_written_before_it(tmp_path):
    args = unit_args(tmp_path)
    assert not run_module("systemd_units", args).failed
    script = tmp_path / "libexec" / "bv-check"
    # a new script, a new helper and a unit that cannot verify (a command that does not exist)
    args["files"][0]["content"] = "#!/bin/sh\nexit 1\n"
    args["files"][1]["content"] = service(script) + "ExecStartPre=/nonexistent/bv-pre\n"
    args["files"].append({"path": str(tmp_path / "libexec" / "new-helper"), "content": "x"})
    bad = run_module("systemd_units", args)
    assert bad.failed and "put back as they were" in bad["msg"], bad
    assert script.read_text() == "#!/bin/sh\nexit 0\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert not (tmp_path / "libexec" / "new-helper").exists()


@needs_analyze
def test_a_failed_first_install_leaves_no_directory_and_no_script(tmp_path):
    args = unit_args(tmp_path)
    args["directories"][0]["path"] = str(tmp_path / "opt" / "bv" / "libexec")  # parents made too
    args["files"][0]["path"] = str(tmp_path / "opt" / "bv" / "libexec" / "bv-check")
    args["files"][1]["content"] = service(tmp_path / "opt" / "bv" / "libexec" / "bv-check")
    args["files"][1]["content"] += "ExecStartPre=/nonexistent/bv-pre\n"
    bad = run_module("systemd_units", args)
    assert bad.failed and "put back as they were" in bad["msg"], bad
    assert sorted(os.listdir(tmp_path)) == []


def test_a_missing_systemd_analyze_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    monkeypatch.setattr(Runner, "__init__", _runner_without_extra_paths(Runner.__init__))
    bad = run_module("systemd_units", unit_args(tmp_path))
    assert bad.failed and "systemd-analyze is not installed" in bad["msg"], bad
    assert sorted(os.listdir(tmp_path)) == []


def _runner_without_extra_paths(init):
    def patched(self, *a, **kw):
        init(self, *a, **kw)
        self.path = os.environ["PATH"]
    return patched


def test_an_unquoted_yaml_mode_is_taken_as_the_permission_bits(tmp_path):
    f = tmp_path / "script"
    r = run_module("systemd_units", {"files": [{"path": str(f), "content": "x", "mode": 0o750}],
                                     "verify": False, "systemd": "never"})
    assert not r.failed and r["files"][0]["mode"] == "0750", r
    assert stat.S_IMODE(f.stat().st_mode) == 0o750


def test_check_mode_plans_and_writes_nothing(tmp_path):
    r = run_module("systemd_units", unit_args(tmp_path), check=True, diff=True)
    assert not r.failed, r
    assert r["changed"] and r["verified"] is None
    assert [a["action"] for a in r["actions"]] == ["mkdir", "mkdir", "create", "create", "create"]
    assert not (tmp_path / "units").exists()


def test_secret_content_is_neither_logged_nor_diffed(tmp_path):
    secret = "key_file: /etc/blindvault/keys/very-secret-path"
    args = {"files": [{"path": str(tmp_path / "vars.yml"), "secret_content": secret, "mode": "0600"}],
            "verify": False, "systemd": "never"}
    r = run_module("systemd_units", args, diff=True)
    assert not r.failed, r
    assert (tmp_path / "vars.yml").read_text() == secret
    assert stat.S_IMODE((tmp_path / "vars.yml").stat().st_mode) == 0o600
    assert "very-secret-path" not in repr(r)
    assert "not shown" in r["diff"][0]["after"]


@pytest.mark.parametrize("change,message", [
    (lambda a: a["files"].append({"path": "relative.service", "content": ""}), "not an absolute path"),
    (lambda a: a["files"].append(dict(a["files"][2])), "declared more than once"),
    (lambda a: a["files"][0].update(mode="rwx"), "is not an octal permission"),
    (lambda a: a["directories"].pop(), "declare it in directories"),
    (lambda a: a.update(enable=["/etc/systemd/system/x.timer"]), "not a unit name"),
    (lambda a: a["files"][1].update(secret_content="hunter2-secret"), "mutually exclusive"),
    (lambda a: a.update(systemd="sometimes"), "systemd must be one of"),
])
def test_bad_input_fails_before_anything_is_written(tmp_path, change, message):
    args = unit_args(tmp_path)
    change(args)
    r = run_module("systemd_units", args)
    assert r.failed and message in r["msg"], r
    assert os.listdir(tmp_path) == []


def test_a_symlink_at_a_file_path_is_refused(tmp_path):
    (tmp_path / "real").write_text("x")
    (tmp_path / "link.service").symlink_to(tmp_path / "real")
    r = run_module("systemd_units", {"files": [{"path": str(tmp_path / "link.service"), "content": "y"}],
                                     "systemd": "never"})
    assert r.failed and "not a regular file" in r["msg"]
    assert (tmp_path / "real").read_text() == "x"


@pytest.fixture
def systemctl(fake_tools):
    """systemctl says every unit is disabled and inactive; systemd-analyze always passes."""
    return fake_tools({"systemctl": "disabled\n", "systemd-analyze": ""})


def test_auto_enables_only_where_systemd_is_pid1(tmp_path, systemctl):
    run = tmp_path / "run-systemd"
    args = unit_args(tmp_path)
    files = [FileSpec(f["path"], f["content"], f.get("mode", "0644")) for f in args["files"]]
    dirs = [DirSpec(d["path"]) for d in args["directories"]]
    # no /run/systemd/system: files only, no systemctl at all
    r = converge(Runner(), files, dirs, enable=["bv-check.timer"], start=["bv-check.timer"],
                 runtime_dir=str(run))
    assert r["verified"] and not r["systemctl"] and r["enabled"] == []
    assert "systemctl" not in systemctl.read_text()
    # systemd is PID 1, units unchanged: enable and start, no daemon-reload
    run.mkdir()
    r = converge(Runner(), files, dirs, enable=["bv-check.timer"], start=["bv-check.timer"],
                 runtime_dir=str(run))
    assert r["systemctl"] and r["enabled"] == ["bv-check.timer"] and r["started"] == ["bv-check.timer"]
    calls = [line for line in systemctl.read_text().splitlines() if line.startswith("systemctl")]
    assert calls == ["systemctl is-enabled bv-check.timer", "systemctl enable bv-check.timer",
                     "systemctl is-active bv-check.timer", "systemctl start bv-check.timer"]
    # check mode with a changed unit: daemon-reload, enable and start planned, only reads run
    systemctl.write_text("")
    files[2] = FileSpec(files[2].path, TIMER.replace("weekly", "daily"))
    r = converge(Runner(check_mode=True), files, dirs, enable=["bv-check.timer"],
                 start=["bv-check.timer"], runtime_dir=str(run))
    assert [a["action"] for a in r["actions"]] == ["replace", "daemon-reload", "enable", "start"]
    assert systemctl.read_text().splitlines() == ["systemctl is-enabled bv-check.timer",
                                                  "systemctl is-active bv-check.timer"]
