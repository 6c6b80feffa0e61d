import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError, Result
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import apply


class Recorder:
    """A runner that records argv and stdin and answers channel programs with ``answer``."""

    def __init__(self, answer='{"return":{}}', check_mode=False):
        self.calls, self.answer, self.check_mode = [], answer, check_mode

    def run(self, argv, changes=False, data=None, **kw):
        self.calls.append((argv, data))
        if self.check_mode and changes:
            return Result(argv, 0, "", "", ran=False)
        out = self.answer if argv[1] == "program" else ""
        return Result(argv, 0, out, "")


def bm(snap):
    return ["zfs", "bookmark", snap, snap.replace("@", "#")]


def test_consecutive_bookmarks_of_a_pool_are_one_program_and_order_is_kept():
    argvs = [bm("p/a@s"), bm("p/b@s"), bm("q/a@s"), ["zfs", "destroy", "p/a@s"], bm("p/c@s")]
    r = Recorder()
    seen = []
    apply.run_commands(r, argvs, seen.append)
    assert [c[0] for c in r.calls] == [
        ["zfs", "program", "-j", "p", "/dev/stdin", "p/a@s", "p/a#s", "p/b@s", "p/b#s"],
        bm("q/a@s"), ["zfs", "destroy", "p/a@s"], bm("p/c@s")]
    assert r.calls[0][1] == apply.BOOKMARKS_PROGRAM and "zfs.check.bookmark" in r.calls[0][1]
    assert seen == [0, 1, 2, 3, 4]


def test_failed_bookmarks_raise_with_their_names_and_nothing_after_runs():
    r = Recorder(answer='{"return":{"p/b#s":17}}')
    seen = []
    with pytest.raises(CommandError) as exc:
        apply.run_commands(r, [bm("p/a@s"), bm("p/b@s"), ["zfs", "destroy", "p/a@s"]], seen.append)
    assert "cannot create bookmark p/b#s: File exists (EEXIST)" in str(exc.value)
    assert len(r.calls) == 1 and seen == []


def test_check_mode_runs_nothing():
    r = Recorder(check_mode=True)
    apply.run_commands(r, [bm("p/a@s"), bm("p/b@s")])
    assert len(r.calls) == 1  # recorded by the runner, skipped: no output to read
