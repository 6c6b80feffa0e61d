import os
import stat

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.runner import (
    CommandError,
    Runner,
    ToolNotFound,
)


def test_runs_argv_in_c_locale():
    res = Runner().run(["sh", "-c", 'echo "$LC_ALL $LANG"; printf "%s|" "$@"', "sh", "a b", "*"])
    assert res.stdout == "C C\na b|*|"
    assert res.rc == 0 and res.ran


def test_error_carries_the_tools_stderr():
    with pytest.raises(CommandError) as exc:
        Runner().run(["sh", "-c", "echo 'no such pool' >&2; exit 3"])
    assert exc.value.rc == 3
    assert exc.value.stderr.strip() == "no such pool"
    assert "no such pool" in str(exc.value) and "rc=3" in str(exc.value)


def test_check_false_returns_the_status():
    assert Runner().run(["sh", "-c", "exit 4"], check=False).rc == 4


def test_secret_goes_on_stdin_and_never_into_history():
    runner = Runner()
    res = runner.run(["sh", "-c", "cat; echo; cat /proc/$$/cmdline | tr '\\0' ' '"],
                     secret="hunter2")
    lines = res.stdout.splitlines()
    assert lines[0] == "hunter2"
    assert "hunter2" not in lines[1]
    assert "hunter2" not in repr(runner.history)


def test_secret_file_is_private_and_removed():
    runner = Runner()
    with runner.secret_file(b"k" * 32) as path:
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        with open(path, "rb") as f:
            assert f.read() == b"k" * 32
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))


def test_check_mode_records_changing_commands_without_running(tmp_path):
    marker = tmp_path / "touched"
    runner = Runner(check_mode=True)
    res = runner.run(["touch", str(marker)], changes=True)
    assert not res.ran and not marker.exists()
    assert runner.run(["true"]).ran  # reads still run in check mode
    assert [h["ran"] for h in runner.history] == [False, True]


@pytest.mark.parametrize("argv", ["ls -l", [], None, ["ls", None], ["ls", b"x"]])
def test_argv_must_be_a_list_of_strings(argv):
    with pytest.raises(TypeError):
        Runner().run(argv)


def test_missing_tool_is_named():
    with pytest.raises(ToolNotFound) as exc:
        Runner().run(["blindvault-no-such-tool"])
    assert "blindvault-no-such-tool" in str(exc.value)


def test_system_sbin_is_searched(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert Runner().which("sh") in ("/usr/bin/sh", "/bin/sh")


def test_pipeline_joins_processes_and_feeds_the_sink():
    import hashlib
    h = hashlib.sha256()
    res = Runner().pipeline([["sh", "-c", "head -c 3000000 /dev/zero"], ["cat"], ["cat"]],
                            sink=h.update)
    assert res.out_bytes == 3000000 and res.rcs == [0, 0, 0]
    assert h.hexdigest() == hashlib.sha256(b"\0" * 3000000).hexdigest()


def test_pipeline_blames_the_reader_not_the_sigpiped_writer():
    with pytest.raises(CommandError) as exc:
        Runner().pipeline([["sh", "-c", "yes"], ["sh", "-c", "head -c 10 >/dev/null; "
                                                       "echo 'cannot receive' >&2; exit 2"]])
    assert exc.value.rc == 2 and "cannot receive" in str(exc.value)
    assert "yes | sh" in str(exc.value)


def test_pipeline_blames_a_failing_writer():
    with pytest.raises(CommandError) as exc:
        Runner().pipeline([["sh", "-c", "echo 'no such snapshot' >&2; exit 1"],
                           ["sh", "-c", "cat >/dev/null; echo 'failed to read' >&2; exit 1"]])
    assert "no such snapshot" in str(exc.value)


def test_pipeline_progress_file_and_check_mode(tmp_path):
    prog = tmp_path / "progress"
    res = Runner().pipeline([["sh", "-c", "echo 12345 >&2; echo data"], ["cat"]],
                            stderr_file=str(prog))
    assert prog.read_text() == "12345\n" and res.stderrs[0] == "12345\n"
    runner = Runner(check_mode=True)
    res = runner.pipeline([["false"], ["false"]], changes=True)
    assert not res.ran and runner.history[0]["ran"] is False


def test_pipeline_feeds_a_source_to_the_first_command(tmp_path):
    out = tmp_path / "out"
    chunks = [b"a" * 100000, b"b" * 7, b""]
    res = Runner().pipeline([["cat"], ["sh", "-c", 'cat > "$0"', str(out)]], source=iter(chunks))
    assert out.read_bytes() == b"".join(chunks) and res.out_bytes == 100007 and res.rcs == [0, 0]


def test_an_aborting_source_leaves_the_reader_with_an_incomplete_stream(tmp_path):
    out = tmp_path / "out"

    def source():
        yield b"first part"
        raise ValueError("the hash does not match")

    with pytest.raises(ValueError, match="hash"):
        Runner().pipeline([["sh", "-c", 'cat > "$0"; echo done >> "$0"', str(out)]], source=source())
    assert out.read_bytes() == b"first partdone\n"  # the reader saw EOF and ended by itself


def test_a_reader_that_dies_early_is_the_cause():
    with pytest.raises(CommandError) as e:
        Runner().pipeline([["sh", "-c", "head -c 1 >/dev/null; echo refused >&2; exit 3"]],
                          source=iter([b"x" * 65536] * 64))
    assert e.value.rc == 3 and "refused" in str(e.value)


def test_source_and_sink_together_are_refused():
    with pytest.raises(TypeError):
        Runner().pipeline([["cat"]], source=iter([]), sink=print)


def test_a_reader_that_leaves_early_without_an_error_still_fails_the_pipeline():
    def source():
        for _chunk in range(64):
            yield b"x" * 65536
        raise AssertionError("never reached: the reader left")

    with pytest.raises(CommandError, match="stopped reading before the end of its input"):
        Runner().pipeline([["head", "-c", "100"]], source=source())
