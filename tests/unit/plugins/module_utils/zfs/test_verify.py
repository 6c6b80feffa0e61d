"""zfs_verify's backend on the host: selection, key plans and file hashing against the replica
tree recorded from ZFS 2.1.11 (tests/unit/fixtures/zfs-list-dst.tsv), and the whole run with a
scripted runner that answers as the real tools did in the lab (tests/integration has the real
thing). The runner stand-in only replays tool output; the logic under test is the real one."""

import hashlib
import os
import subprocess

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import (
    CommandError,
    PipeResult,
    Result,
)
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import verify as v
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import Tree, parse_list
from ansible_collections.blindvault.storage.tests.run_module import run_module

KEY = "correct horse battery staple"
DAMAGED_SEND = "warning: cannot send 'bvrecdst/hex-hex/child@s2': dataset key must be loaded"


@pytest.fixture
def rows(fixture_text):
    """The recorded replica tree as {name: {column: text}}, in zfs list order."""
    cols = fixture_text("zfs-list.columns").strip().split(",")
    out = {}
    for line in fixture_text("zfs-list-dst.tsv").splitlines():
        values = dict(zip(cols, line.split("\t")))
        out[values["name"]] = values
    return out


def tree_of(rows):
    cols = list(next(iter(rows.values())))
    return Tree(tuple(parse_list(emit(rows, cols), cols)))


def emit(rows, cols):
    return "".join("\t".join(r.get(c, "-") for c in cols) + "\n" for r in rows.values())


def opts(**kw):
    params = dict(name="bvrecdst", recursive=True, mode="stream")
    params.update(kw)
    return v.validate(params)


class ReplayRunner:
    """Answers zfs list from recorded rows, and load-key/send/mount as the lab showed.

    ``bad_keys``: roots whose load-key fails with ZFS's words; ``unwrappable``: datasets
    whose own key the loaded root cannot unwrap; ``files``: {snapshot: {path: bytes}} that
    a mount shows.
    """

    def __init__(self, rows, bad_keys=(), unwrappable=(), files=None, explode_on=None):
        self.rows = rows
        self.bad_keys = set(bad_keys)
        self.unwrappable = set(unwrappable)
        self.files = files or {}
        self.explode_on = explode_on
        self.calls = []
        self.secrets = []
        self.loaded = set()
        self.mounted = {}

    def run(self, argv, changes=False, secret=None, data=None, check=True, timeout=None):
        self.calls.append(list(argv))
        self.secrets.append(secret)
        if argv[:2] == ["zfs", "list"]:
            return Result(argv, 0, self._list(argv), "")
        if argv[:2] == ["zfs", "load-key"]:
            root = argv[-1]
            if root in self.bad_keys:
                raise CommandError(argv, 255, "", "Key load error: Incorrect key provided for '%s'.\n"
                                   % root)
            self.loaded.add(root)
            return Result(argv, 0, "", "")
        if argv[:2] == ["zfs", "unload-key"]:
            self.loaded.remove(argv[-1])
            return Result(argv, 0, "", "")
        if argv[0] == "mount":
            snap, mnt = argv[-2], argv[-1]
            if snap.split("@")[0] in self.unwrappable:
                raise CommandError(argv, 1, "", "filesystem '%s' can not be mounted: Permission "
                                   "denied\n" % snap)
            for rel, content in self.files.get(snap, {}).items():
                os.makedirs(os.path.dirname(os.path.join(mnt, rel)), exist_ok=True)
                with open(os.path.join(mnt, rel), "wb") as f:
                    f.write(content)
            self.mounted[mnt] = snap
            return Result(argv, 0, "", "")
        if argv[0] == "umount":
            mnt = argv[-1]
            del self.mounted[mnt]
            for entry in os.listdir(mnt):  # what the kernel's unmount makes disappear
                subprocess.run(["rm", "-rf", os.path.join(mnt, entry)], check=True)
            return Result(argv, 0, "", "")
        raise AssertionError("unexpected command %r" % argv)

    def pipeline(self, argvs, changes=False, sink=None, stderr_file=None, timeout=None):
        self.calls.append(argvs)
        snap = argvs[0][-1]
        if snap == self.explode_on:
            raise RuntimeError("interrupted")
        if snap.split("@")[0] in self.unwrappable:
            raise CommandError(argvs[0], 1, "", "%s (in: %s)" % (DAMAGED_SEND, " ".join(argvs[0])))
        data = ("stream of %s\n" % snap).encode()
        sink(data)
        return PipeResult(argvs, [0], [""], out_bytes=len(data), seconds=0.01)

    def _list(self, argv):
        cols = argv[argv.index("-o") + 1].split(",")
        types = argv[argv.index("-t") + 1].split(",")
        names = [a for a in argv[argv.index("-o") + 2:] if a not in ("-r", "-d", "0", "1")]
        depth = argv[argv.index("-d") + 1] if "-d" in argv else None
        picked = {}
        for name, r in self.rows.items():
            kind = r["type"]
            if "all" not in types and kind not in types:
                continue
            ds = name.split("@")[0].split("#")[0]
            for n in names:
                if depth == "0" and name == n:
                    picked[name] = r
                elif depth == "1" and ds == n and name != n:
                    picked[name] = r
                elif depth is None and (ds == n or ds.startswith(n + "/")):
                    picked[name] = r
        return emit(picked, cols)

    def lists(self):
        return [c for c in self.calls if c[:2] == ["zfs", "list"]]


# -- input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("params,message", [
    ({"name": ""}, "is required"),
    ({"name": "p/ds@s1"}, "short name in snapshot"),
    ({"name": "p/ds", "mode": "scrub"}, "mode must be"),
    ({"name": "p/ds", "snapshot": "a/b"}, "short name"),
    ({"name": "p/ds", "key": KEY, "key_file": "/etc/hostname"}, "not both"),
    ({"name": "p/ds", "key_file": "/nonexistent/key"}, "does not exist"),
    ({"name": "p/ds", "compare_files_with": "q/ds"}, "needs mode files"),
    ({"name": "p/ds", "mode": "files", "compare_files_with": "q/ds@s1"}, "without @snapshot"),
    ({"name": "p/ds", "keys": [{"encryptionroot": "p/ds"}]}, r"keys\[0\]: give key or key_file"),
    ({"name": "p/ds", "keys": [{"encryptionroot": "p/a", "key": KEY},
                               {"encryptionroot": "p/a", "key": KEY}]}, "named twice"),
])
def test_bad_input_is_refused_before_anything_runs(params, message):
    with pytest.raises(Refusal, match=message):
        v.validate(params)


def test_keys_go_on_stdin_or_as_files(tmp_path):
    kf = tmp_path / "k"
    kf.write_text("ab" * 32)
    o = v.validate({"name": "p/ds", "snapshot": "@s2",
                    "keys": [{"encryptionroot": "p/a", "key": KEY},
                             {"encryptionroot": "p/b", "key_file": str(kf)}]})
    assert o["snapshot"] == "s2" and o["default_key"] == (None, None)
    assert o["keys"] == {"p/a": ("prompt", KEY + "\n"), "p/b": ("file://%s" % kf, None)}


# -- what gets read --------------------------------------------------------------------------

def test_each_dataset_reads_its_newest_snapshot(rows):
    got = {r["name"]: (r["snapshot"], r["status"]) for r in v.select(tree_of(rows), opts())}
    assert got["bvrecdst"] == (None, "skipped")  # the pool's root has no snapshots
    # After a child-only send the replica root's newest is still @s1: each reads its own.
    assert got["bvrecdst/hex-hex"] == ("s1", None)
    assert got["bvrecdst/hex-hex/child"] == ("s2", None)
    assert got["bvrecdst/healthy"] == ("s2", None)
    assert len(got) == 11


def test_a_named_snapshot_missing_on_a_member_fails_it(rows):
    got = {r["name"]: r for r in v.select(tree_of(rows), opts(snapshot="s2"))}
    root = got["bvrecdst/pp-hex"]
    assert root["status"] == "failed"
    assert root["error"] == "bvrecdst/pp-hex has no snapshot @s2 (its newest is @s1)"
    assert got["bvrecdst/pp-hex/child"]["status"] is None


@pytest.mark.parametrize("kw,message", [
    (dict(name="bvrecdst/nope"), "bvrecdst/nope does not exist"),
    (dict(name="bvrecdst/healthy", snapshot="s9"), "nothing to verify under bvrecdst/healthy"),
    (dict(name="bvrecdst", recursive=False), "no snapshots to verify"),
])
def test_nothing_to_read_is_refused(rows, kw, message):
    with pytest.raises(Refusal, match=message):
        v.select(tree_of(rows), opts(**kw))


def test_volumes_are_skipped_in_files_mode_only():
    tree = Tree((parse_list("p/vol\tvolume\n", ["name", "type"])[0],
                 parse_list("p/vol@s1\tsnapshot\n", ["name", "type"])[0]))
    assert v.select(tree, opts(name="p/vol"))[0]["status"] is None
    with pytest.raises(Refusal, match="a volume has no files"):
        v.select(tree, opts(name="p/vol", mode="files"))


# -- keys ------------------------------------------------------------------------------------

def test_only_unloaded_roots_are_loaded_each_from_its_own_source(rows, tmp_path):
    rows["bvrecdst/healthy"]["keystatus"] = "available"
    kf = tmp_path / "hh"
    kf.write_text("ab" * 32)
    o = opts(key=KEY, keys=[{"encryptionroot": "bvrecdst/hex-hex", "key_file": str(kf)}])
    loads = v.plan_keys(tree_of(rows), {"bvrecdst/healthy", "bvrecdst/hex-hex", "bvrecdst/pp-pp"}, o)
    assert loads == [
        {"root": "bvrecdst/hex-hex", "location": "file://%s" % kf, "secret": None},
        {"root": "bvrecdst/pp-pp", "location": "prompt", "secret": KEY + "\n"},
    ]
    # Without any key, the root's own keylocation serves (plain zfs load-key).
    assert v.plan_keys(tree_of(rows), {"bvrecdst/pp-pp"}, opts()) == [
        {"root": "bvrecdst/pp-pp", "location": None, "secret": None}]


def test_a_prompt_keylocation_without_a_key_is_refused(rows):
    rows["bvrecdst/pp-pp"]["keylocation"] = "prompt"
    with pytest.raises(Refusal, match="no key was given and its keylocation is prompt"):
        v.plan_keys(tree_of(rows), {"bvrecdst/pp-pp"}, opts())


def test_a_raw_key_must_come_from_a_file(rows):
    rows["bvrecdst/hex-hex"]["keyformat"] = "raw"
    with pytest.raises(Refusal, match="raw key"):
        v.plan_keys(tree_of(rows), {"bvrecdst/hex-hex"}, opts(key=KEY))


def test_keys_for_unknown_roots_are_refused(rows):
    o = opts(keys=[{"encryptionroot": "bvrecdst/healthy/child", "key": KEY}])
    with pytest.raises(Refusal, match="not an encryption root of bvrecdst"):
        v.plan_keys(tree_of(rows), set(), o)


# -- files -----------------------------------------------------------------------------------

def make_files(top, files):
    for rel, content in files.items():
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_file_hashes_match_sha256sum(tmp_path):
    top = tmp_path / "t"
    make_files(top, {"a": b"alpha\n", "d/b": b"beta" * 100000, "d/e/c": b""})
    (top / "link").symlink_to("a")
    os.mkfifo(top / "fifo")
    files, total, errors = v.hash_tree(str(top))
    assert errors == [] and total == 6 + 400000
    listing = subprocess.run("find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum",
                             shell=True, cwd=top, capture_output=True, check=True).stdout
    assert v.manifest_sha256(files) == hashlib.sha256(listing).hexdigest()
    assert sorted(files) == ["a", "d/b", "d/e/c"]


def test_compare_names_missing_extra_and_different():
    replica = {"a": "1", "b": "2", "x": "9"}
    source = {"a": "1", "b": "3", "c": "4"}
    assert v.compare_files(replica, source) == [
        {"path": "b", "problem": "different"}, {"path": "c", "problem": "missing"},
        {"path": "x", "problem": "extra"}]


# -- whole runs ------------------------------------------------------------------------------

def test_the_blind_spot_fails_its_child_and_restores_the_key(rows):
    runner = ReplayRunner(rows, unwrappable={"bvrecdst/hex-hex/child"})
    r = v.verify(runner, {"name": "bvrecdst/hex-hex", "key": KEY})
    by = {d["name"]: d for d in r["datasets"]}
    root, child = by["bvrecdst/hex-hex"], by["bvrecdst/hex-hex/child"]
    assert root["status"] == "ok" and root["snapshot"] == "s1"
    assert root["sha256"] == hashlib.sha256(b"stream of bvrecdst/hex-hex@s1\n").hexdigest()
    assert child["status"] == "failed" and child["error"] == DAMAGED_SEND
    assert "cannot be decrypted with it" in child["hint"]
    assert r["ok"] is False and r["failed_datasets"] == ["bvrecdst/hex-hex/child"]
    assert r["hazards"] == [] and r["changed"] is False
    assert r["keys_loaded"] == ["bvrecdst/hex-hex"] and runner.loaded == set()
    assert runner.calls[-1] == ["zfs", "unload-key", "bvrecdst/hex-hex"]
    assert len(runner.lists()) == 1
    assert runner.calls[1] == ["zfs", "load-key", "-L", "prompt", "bvrecdst/hex-hex"]
    assert runner.secrets[1] == KEY + "\n"
    assert not any(KEY in " ".join(map(str, c)) for c in runner.calls)


def test_a_wrong_key_fails_the_group_and_loads_nothing(rows):
    runner = ReplayRunner(rows, bad_keys={"bvrecdst/healthy"})
    r = v.verify(runner, {"name": "bvrecdst/healthy", "key": KEY})
    assert [d["status"] for d in r["datasets"]] == ["failed", "failed"]
    assert r["datasets"][1]["error"] == ("the key of bvrecdst/healthy could not be loaded: Key load "
                                         "error: Incorrect key provided for 'bvrecdst/healthy'.")
    assert r["keys_loaded"] == [] and not any(c[0] == ["zfs", "send"] for c in runner.calls)
    assert ["zfs", "unload-key", "bvrecdst/healthy"] not in runner.calls


def test_a_member_reads_through_the_root_above_it(rows):
    runner = ReplayRunner(rows)
    r = v.verify(runner, {"name": "bvrecdst/healthy/child", "recursive": False})
    assert r["ok"] and r["datasets"][0]["snapshot"] == "s2"
    assert r["keys_loaded"] == ["bvrecdst/healthy"]
    lists = runner.lists()
    # the member and its snapshots (-d 0, -d 1), then its encryption root (-d 0)
    assert len(lists) == 3 and lists[-1][-3:] == ["-d", "0", "bvrecdst/healthy"]


def test_keys_are_unloaded_even_when_reading_breaks(rows):
    runner = ReplayRunner(rows, explode_on="bvrecdst/pp-pp/child@s2")
    with pytest.raises(RuntimeError):
        v.verify(runner, {"name": "bvrecdst"})
    assert runner.loaded == set()
    unloaded = [c[-1] for c in runner.calls if c[:2] == ["zfs", "unload-key"]]
    assert sorted(unloaded) == sorted("bvrecdst/" + c for c in
                                      ("healthy", "hex-hex", "hex-pp", "pp-hex", "pp-pp"))


def test_files_mode_compares_with_the_source_and_unmounts(rows):
    # The recorded source tree, under another pool name, is the replica's source.
    src = {k.replace("bvrecdst", "bvrecsrc"): dict(r, name=r["name"].replace("bvrecdst", "bvrecsrc"),
                                                   keystatus="available" if r["keystatus"] != "-" else "-")
           for k, r in rows.items()}
    both = dict(rows, **src)
    files = {"bvrecdst/healthy/child@s2": {"payload": b"p" * 10, "extra": b"x"},
             "bvrecsrc/healthy/child@s2": {"payload": b"q" * 10, "gone/f": b"y"},
             "bvrecdst/healthy@s2": {}, "bvrecsrc/healthy@s2": {}}
    runner = ReplayRunner(both, files=files)
    r = v.verify(runner, {"name": "bvrecdst/healthy", "mode": "files",
                          "compare_files_with": "bvrecsrc/healthy", "fail_on_error": False})
    root, child = r["datasets"]
    assert root["status"] == "ok" and root["files"] == 0 and root["mismatches"] == []
    assert root["compared_with"] == "bvrecsrc/healthy@s2"
    assert child["status"] == "failed" and child["files"] == 2 and child["bytes"] == 11
    assert child["mismatches"] == [{"path": "extra", "problem": "extra"},
                                   {"path": "gone/f", "problem": "missing"},
                                   {"path": "payload", "problem": "different"}]
    assert child["error"] == "3 file(s) differ from bvrecsrc/healthy/child@s2"
    assert runner.mounted == {} and runner.loaded == set()
    mounts = [c for c in runner.calls if c[0] == "mount"]
    assert mounts[0][:5] == ["mount", "-t", "zfs", "-o", "ro"] and len(mounts) == 4
    workdir = os.path.dirname(mounts[0][-1])
    assert not os.path.exists(workdir)
    assert len(runner.lists()) == 2  # the replica tree, the source tree


def test_files_mode_reports_the_mount_failure_in_zfs_words(rows):
    runner = ReplayRunner(rows, unwrappable={"bvrecdst/pp-pp/child"},
                          files={"bvrecdst/pp-pp@s1": {"f": b"1"}})
    r = v.verify(runner, {"name": "bvrecdst/pp-pp", "mode": "files"})
    root, child = r["datasets"]
    assert root["status"] == "ok" and root["files"] == 1
    assert child["error"] == ("filesystem 'bvrecdst/pp-pp/child@s2' can not be mounted: "
                              "Permission denied")
    assert child["hint"] and r["hazards"][0]["reason"] == "pbkdf2"


# -- the module layer ------------------------------------------------------------------------

def test_module_fails_clearly_on_a_missing_dataset(fake_tools):
    log = fake_tools({"zfs": ""})
    r = run_module("zfs_verify", {"name": "bvrecdst/nope", "key": KEY})
    assert r.failed and r["msg"] == "bvrecdst/nope does not exist"
    assert log.read_text().count("zfs list") == 1 and "load-key" not in log.read_text()


def test_module_refuses_key_and_key_file_together(fake_tools):
    fake_tools({"zfs": ""})
    r = run_module("zfs_verify", {"name": "p/x", "key": KEY, "key_file": "/etc/hostname"})
    assert r.failed and "mutually exclusive" in r["msg"] and "Traceback" not in r["msg"]
