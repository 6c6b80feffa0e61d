"""zfs_prune's planner on small hand-built trees (pure: no processes), its apply step with a
scripted runner, and the module's input errors.

Creation times are fabricated here (UTC), so the hour/day/week/month rules are tested where
a fast lab test cannot reach them; tests/integration/test_zfs_prune.py proves keep_last,
match, holds, bookmarks and targets against real ZFS.
"""

import calendar
import random

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.plan import PartialApply, Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import Result, Runner
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import prune as pr
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import (
    Dataset,
    Tree,
    columns_for,
    parse_list,
)
from ansible_collections.blindvault.storage.tests.run_module import run_module

GUIDS = {}
NOW = calendar.timegm((2026, 11, 23, 12, 0, 0))


def guid(name):
    """A stable guid per snapshot name; a replica's snapshot names its source's to share it."""
    return GUIDS.setdefault(name, len(GUIDS) + 1000)


def ts(*ymdhm):
    """UTC epoch seconds of (year, month, day[, hour[, minute]])."""
    parts = list(ymdhm) + [0] * (5 - len(ymdhm))
    return calendar.timegm(tuple(parts) + (0,))


def fs(name):
    return Dataset(name, "filesystem", {"createtxg": 1})


def snap(name, txg, creation=None, guid_=None, **props):
    return Dataset(name, "snapshot", dict({"guid": guid_ or guid(name), "createtxg": txg,
                                           "creation": creation if creation is not None else NOW - 1000 + txg,
                                           "userrefs": 0, "clones": None}, **props))


def mark(name, txg, guid_):
    return Dataset(name, "bookmark", {"guid": guid_, "createtxg": txg})


def tree(*entries, holds=None):
    return Tree(entries=tuple(entries), holds=holds or {})


def series(ds, count, start=1):
    return [snap("%s@s%d" % (ds, i), 10 * i) for i in range(start, start + count)]


def opts(**kw):
    kw.setdefault("name", "p/a")
    kw.setdefault("utc", True)
    return pr.Options(**kw)


def plan(t, dst=None, resume=None, **kw):
    return pr.plan_prune(t, dst or tree(), opts(**kw), NOW, resume)


def shorts(names):
    return [n.split("@", 1)[1] for n in names]


# input


@pytest.mark.parametrize("kw,message", [
    ({}, "no retention rule given"),
    ({"keep_last": -1}, "at least 0"),
    ({"daily": True}, "whole number"),
    ({"name": "p/a@s", "keep_last": 1}, "not a dataset name"),
    ({"keep_last": 1, "match": ""}, "match must be a glob"),
    ({"keep_last": 1, "targets": ["c/a", "c/a"]}, "more than once"),
    ({"keep_last": 1, "targets": ["p/a/b"]}, "overlaps"),
    ({"keep_last": 1, "targets": ["p"]}, "overlaps"),
    ({"keep_last": 1, "targets": ["c/a#b"]}, "not a dataset name"),
])
def test_bad_input_is_refused(kw, message):
    with pytest.raises(Refusal, match=message):
        pr.validate(opts(**kw))


def test_a_missing_dataset_is_refused():
    with pytest.raises(Refusal, match="dataset p/a does not exist"):
        plan(tree(fs("p/b")), keep_last=1)


# keep_last, match, newest


def test_keep_last_destroys_the_rest_in_one_command_after_bookmarking():
    pp = plan(tree(fs("p/a"), *series("p/a", 5)), keep_last=2)
    assert shorts(pp.destroyed) == ["s1", "s2", "s3"]
    assert pp.kept == {"p/a@s4": ["keep_last"], "p/a@s5": ["keep_last", "newest"]}
    assert pp.bookmarks == ["p/a#s1", "p/a#s2", "p/a#s3"]
    steps = pp.plan.steps
    assert [s.action for s in steps] == ["bookmark"] * 3 + ["destroy"]
    assert steps[0].argv == ["zfs", "bookmark", "p/a@s1", "p/a#s1"]
    assert steps[-1].argv == ["zfs", "destroy", "p/a@s1,s2,s3"]


def test_the_newest_snapshot_always_stays():
    pp = plan(tree(fs("p/a"), *series("p/a", 3)), keep_last=0)
    assert shorts(pp.destroyed) == ["s1", "s2"] and pp.kept == {"p/a@s3": ["newest"]}


def test_only_matching_snapshots_are_candidates():
    t = tree(fs("p/a"), snap("p/a@auto-1", 1), snap("p/a@manual", 2), snap("p/a@auto-2", 3),
             snap("p/a@auto-3", 4), snap("p/a@keepme", 5))
    pp = plan(t, keep_last=1, match="auto-*", bookmark_before_destroy=False)
    assert shorts(pp.destroyed) == ["auto-1", "auto-2"]
    # p/a@keepme is the newest but no candidate; auto-3 stays by keep_last only
    assert pp.kept == {"p/a@auto-3": ["keep_last"]}
    assert [s.action for s in pp.plan.steps] == ["destroy"]


def test_nothing_to_do_is_no_change():
    pp = plan(tree(fs("p/a"), *series("p/a", 2)), keep_last=5)
    assert not pp.plan.changed and pp.destroyed == []


def test_recursive_judges_each_dataset_on_its_own():
    t = tree(fs("p/a"), fs("p/a/b"), fs("p/other"), *series("p/a", 3), *series("p/a/b", 1),
             *series("p/other", 3))
    pp = plan(t, keep_last=1, recursive=True)
    assert pp.destroyed == ["p/a@s1", "p/a@s2"]
    assert pp.kept["p/a/b@s1"] == ["keep_last", "newest"]
    assert plan(t, keep_last=1).datasets == ["p/a"]


# periods


def test_hourly_keeps_the_newest_of_each_of_the_last_hours_with_snapshots():
    # every 15 minutes from 09:00 to 11:45, then nothing
    snaps = [snap("p/a@q%02d" % i, i + 1, ts(2026, 11, 23, 9 + i // 4, 15 * (i % 4))) for i in range(12)]
    pp = plan(tree(fs("p/a"), *snaps), hourly=2)
    assert shorts(n for n, r in pp.kept.items() if "hourly" in r) == ["q07", "q11"]
    assert len(pp.destroyed) == 10


def test_periods_count_only_periods_that_have_snapshots():
    # a dataset that stopped getting snapshots keeps them: days 1, 2 and 10
    snaps = [snap("p/a@d1", 1, ts(2026, 11, 1, 8)), snap("p/a@d1b", 2, ts(2026, 11, 1, 20)),
             snap("p/a@d2", 3, ts(2026, 11, 2, 8)), snap("p/a@d10", 4, ts(2026, 11, 10, 8))]
    pp = plan(tree(fs("p/a"), *snaps), daily=3)
    assert pp.destroyed == ["p/a@d1"]
    assert pp.kept["p/a@d1b"] == ["daily"] and pp.kept["p/a@d10"] == ["daily", "newest"]


def test_weeks_are_iso_weeks_across_the_new_year():
    # Mon 2025-12-29 and Sun 2026-01-04 are ISO week 2026-W01; Mon 2026-01-05 starts W02
    snaps = [snap("p/a@mon", 1, ts(2025, 12, 29, 10)), snap("p/a@sun", 2, ts(2026, 1, 4, 10)),
             snap("p/a@next", 3, ts(2026, 1, 5, 10))]
    weekly = plan(tree(fs("p/a"), *snaps), weekly=5)
    assert weekly.destroyed == ["p/a@mon"] and weekly.kept["p/a@sun"] == ["weekly"]
    monthly = plan(tree(fs("p/a"), *snaps), monthly=5)
    assert monthly.destroyed == ["p/a@sun"] and monthly.kept["p/a@mon"] == ["monthly"]
    yearly = plan(tree(fs("p/a"), *snaps), yearly=1)
    assert yearly.destroyed == ["p/a@mon", "p/a@sun"]


def test_rules_combine_and_each_is_named():
    snaps = [snap("p/a@h%02d" % h, h + 1, ts(2026, 11, 20 + h // 24, h % 24)) for h in range(72)]
    pp = plan(tree(fs("p/a"), *snaps), keep_last=2, hourly=3, daily=2)
    assert pp.kept["p/a@h71"] == ["keep_last", "hourly", "daily", "newest"]
    assert pp.kept["p/a@h70"] == ["keep_last", "hourly"] and pp.kept["p/a@h69"] == ["hourly"]
    assert pp.kept["p/a@h47"] == ["daily"]
    assert len(pp.kept) == 4 and len(pp.destroyed) == 68


def test_local_time_is_the_default(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    import time
    time.tzset()
    try:
        # 03:00 UTC on Nov 2 is still Nov 1 in New York
        snaps = [snap("p/a@x", 1, ts(2026, 11, 1, 20)), snap("p/a@y", 2, ts(2026, 11, 2, 3))]
        local = pr.plan_prune(tree(fs("p/a"), *snaps), tree(), pr.Options("p/a", daily=1, keep_last=0), NOW)
        utc = plan(tree(fs("p/a"), *snaps), daily=1, keep_last=0)
        assert local.destroyed == ["p/a@x"] and utc.destroyed == ["p/a@x"]
        two = pr.plan_prune(tree(fs("p/a"), *snaps), tree(), pr.Options("p/a", daily=2), NOW)
        assert two.destroyed == ["p/a@x"]  # one local day: only its newest stays
        assert plan(tree(fs("p/a"), *snaps), daily=2).destroyed == []  # two UTC days
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("seed", range(8))
def test_a_second_run_destroys_nothing(seed):
    rng = random.Random(seed)
    when = ts(2025, 1, 1)
    snaps = []
    for i in range(150):
        when += rng.choice([60, 900, 3600, 5 * 3600, 86400, 9 * 86400])
        snaps.append(snap("p/a@r%03d" % i, i + 1, when))
    rules = {r: rng.choice([None, 0, 1, 3, 7]) for r in pr.RULES}
    rules["keep_last"] = rng.choice([0, 2, 5])
    t = tree(fs("p/a"), *snaps)
    first = plan(t, **rules)
    left = tree(*[e for e in t.entries if e.name not in set(first.destroyed)])
    second = plan(left, **rules)
    assert second.destroyed == [] and second.kept == first.kept


def test_future_creation_is_warned_about():
    pp = plan(tree(fs("p/a"), snap("p/a@f", 1, NOW + 86400), snap("p/a@g", 2)), keep_last=1)
    assert any("in the future" in w for w in pp.plan.warnings)


# holds, clones, bookmarks


def test_held_snapshots_are_skipped_and_reported():
    s = series("p/a", 4)
    s[0] = snap("p/a@s1", 10, userrefs=1)
    s[2] = snap("p/a@s3", 30, userrefs=2)
    holds = {"p/a@s1": ["keep"], "p/a@s3": ["blindvault:c/a", "keep"]}
    pp = plan(tree(fs("p/a"), *s, holds=holds), keep_last=1)
    assert pp.destroyed == ["p/a@s2"]
    assert pp.held == {"p/a@s1": ["keep"], "p/a@s3": ["blindvault:c/a", "keep"]}
    assert pp.kept["p/a@s1"] == ["held"]
    assert not [st for st in pp.plan.steps if st.action == "release"]
    kept_by_rule = plan(tree(fs("p/a"), *s, holds=holds), keep_last=2)
    assert kept_by_rule.kept["p/a@s3"] == ["keep_last", "held"] and "p/a@s3" not in kept_by_rule.held


def test_origins_of_clones_stay():
    t = tree(fs("p/a"), snap("p/a@s1", 1, clones="p/c1,p/c2"), *series("p/a", 2, start=2))
    pp = plan(t, keep_last=1)
    assert pp.destroyed == ["p/a@s2"] and pp.kept["p/a@s1"] == ["origin of p/c1,p/c2"]


def test_an_existing_bookmark_of_the_same_snapshot_is_enough():
    t = tree(fs("p/a"), *series("p/a", 3), mark("p/a#mine", 10, guid("p/a@s1")))
    pp = plan(t, keep_last=1)
    assert pp.bookmarks == ["p/a#s2"]


def test_a_same_named_bookmark_of_another_snapshot_is_refused():
    t = tree(fs("p/a"), *series("p/a", 3), mark("p/a#s2", 5, 4242))
    with pytest.raises(Refusal, match="p/a#s2 exists but marks another snapshot"):
        plan(t, keep_last=1)
    assert plan(t, keep_last=1, bookmark_before_destroy=False).destroyed == ["p/a@s1", "p/a@s2"]


def test_long_lists_are_split_below_the_argument_limit():
    names = ["autosnap_2026-11-%05d_hourly_with_a_long_label" % i for i in range(5000)]
    t = tree(fs("p/a"), *[snap("p/a@" + n, i + 1) for i, n in enumerate(names)])
    pp = plan(t, keep_last=1, bookmark_before_destroy=False)
    argvs = [s.argv for s in pp.plan.steps]
    assert len(argvs) > 1 and all(len(a[2]) <= pr.MAX_ARG for a in argvs)
    assert [x for a in argvs for x in a[2].split("@", 1)[1].split(",")] == names[:-1]


# targets (R4)


def replica(*pairs, extra=()):
    """A target tree: (replica dataset, [source snapshots it has]) pairs."""
    entries = list(extra)
    for name, sources in pairs:
        entries.append(fs(name))
        for i, src in enumerate(sources):
            entries.append(snap("%s@%s" % (name, src.split("@")[1]), 100 + i, guid_=guid(src)))
    return tree(*entries)


def test_the_newest_common_snapshot_of_every_replica_stays():
    src = tree(fs("p/a"), fs("p/a/b"), *series("p/a", 5), *series("p/a/b", 5))
    dst = replica(("c/a", ["p/a@s1", "p/a@s2"]), ("c/a/b", ["p/a/b@s1", "p/a/b@s2", "p/a/b@s3"]),
                  extra=[fs("c")])
    pp = plan(src, dst, keep_last=1, recursive=True, targets=["c/a"])
    assert pp.kept["p/a@s2"] == ["base of c/a"] and pp.kept["p/a/b@s3"] == ["base of c/a/b"]
    assert shorts(pp.destroyed) == ["s1", "s3", "s4", "s1", "s2", "s4"]
    assert pp.bases == [{"target": "c/a", "snapshot": "p/a@s2"},
                        {"target": "c/a/b", "snapshot": "p/a/b@s3"}]


def test_bases_are_found_by_guid_not_by_name():
    src = tree(fs("p/a"), *series("p/a", 4))
    # the replica's snapshot is named s3 but is the source's s2 (renamed): guid decides
    dst = tree(fs("c/a"), snap("c/a@s3", 100, guid_=guid("p/a@s2")))
    pp = plan(src, dst, keep_last=1, targets=["c/a"])
    assert pp.kept["p/a@s2"] == ["base of c/a"] and "p/a@s3" in pp.destroyed


def test_two_targets_keep_both_bases():
    src = tree(fs("p/a"), *series("p/a", 5))
    dst = replica(("c/a", ["p/a@s1"]), ("d/a", ["p/a@s1", "p/a@s3"]))
    pp = plan(src, dst, keep_last=1, targets=["c/a", "d/a"])
    assert pp.kept == {"p/a@s1": ["base of c/a"], "p/a@s3": ["base of d/a"],
                       "p/a@s5": ["keep_last", "newest"]}


def test_a_missing_target_is_an_error_not_a_silent_skip():
    src = tree(fs("p/a"), *series("p/a", 3))
    with pytest.raises(Refusal, match="target c/a does not exist"):
        plan(src, tree(fs("c")), keep_last=1, targets=["c/a"])


def test_a_replica_sharing_nothing_is_an_error():
    src = tree(fs("p/a"), fs("p/a/b"), *series("p/a", 3), *series("p/a/b", 2))
    dst = replica(("c/a", ["p/a@s1"]), ("c/a/b", []))
    with pytest.raises(Refusal, match="p/a/b and its replica c/a/b share no snapshot"):
        plan(src, dst, keep_last=1, recursive=True, targets=["c/a"])


def test_a_dataset_without_replica_is_pruned_with_a_warning():
    src = tree(fs("p/a"), fs("p/a/new"), *series("p/a", 3), *series("p/a/new", 3))
    dst = replica(("c/a", ["p/a@s1"]))
    pp = plan(src, dst, keep_last=1, recursive=True, targets=["c/a"])
    assert "p/a/new@s1" in pp.destroyed and pp.kept["p/a@s1"] == ["base of c/a"]
    assert pp.plan.warnings == ["no replica on c/a of p/a/new: nothing kept for it there"]


def test_the_snapshot_an_interrupted_receive_resumes_to_stays():
    src = tree(fs("p/a"), *series("p/a", 5))
    dst = replica(("c/a", ["p/a@s1"]))
    pp = plan(src, dst, resume={"c/a": guid("p/a@s3")}, keep_last=1, targets=["c/a"])
    assert pp.kept["p/a@s3"] == ["resume of c/a"] and pp.kept["p/a@s1"] == ["base of c/a"]
    assert shorts(pp.destroyed) == ["s2", "s4"]


def test_an_interrupted_seed_keeps_its_resume_point_instead_of_failing():
    src = tree(fs("p/a"), *series("p/a", 4))
    dst = tree(Dataset("c/a", "filesystem", {"receive_resume_token": "1-x"}))
    pp = plan(src, dst, resume={"c/a": guid("p/a@s2")}, keep_last=1, targets=["c/a"])
    assert pp.kept["p/a@s2"] == ["resume of c/a"] and pp.bases == []
    assert shorts(pp.destroyed) == ["s1", "s3"]
    with pytest.raises(Refusal, match="share no snapshot"):
        plan(src, dst, keep_last=1, targets=["c/a"])


def test_parse_list_input_works_too():
    cols = columns_for(pr.SOURCE_EXTRA)
    row = {c: "-" for c in cols}

    def line(**kw):
        r = dict(row, **kw)
        return "\t".join(r[c] for c in cols)

    text = "\n".join([
        line(name="p/a", type="filesystem", guid="1", createtxg="1"),
        line(name="p/a@s1", type="snapshot", guid="11", createtxg="5", creation="1700000000",
             userrefs="0"),
        line(name="p/a@s2", type="snapshot", guid="12", createtxg="6", creation="1700000100",
             userrefs="0"),
    ])
    t = Tree(tuple(parse_list(text, cols)))
    assert plan(t, keep_last=1).destroyed == ["p/a@s1"]


# apply, with a runner that serves recorded output


class ScriptedRunner(Runner):
    """Serves canned stdout by argv prefix; changing commands are logged, never run."""

    def __init__(self, outputs, check_mode=False, fail=None):
        super().__init__(check_mode=check_mode)
        self.outputs = outputs
        self.fail = fail
        self.calls = []

    def run(self, argv, changes=False, secret=None, data=None, check=True, timeout=None):
        if changes and self.check_mode:
            return super().run(argv, changes=True)
        self.calls.append(argv)
        if self.fail and " ".join(argv).startswith(self.fail):
            from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError
            raise CommandError(argv, 1, "", "dataset is busy")
        for prefix, out in self.outputs:
            if " ".join(argv).startswith(prefix):
                return Result(argv, 0, out, "")
        return Result(argv, 0, "", "")


def listing(entries, cols):
    return "\n".join("\t".join("-" if e.get(c) is None else str(e[c]) for c in cols)
                     for e in entries) + "\n"


@pytest.fixture
def recorded():
    cols = columns_for(pr.SOURCE_EXTRA)
    src = [dict(name="p/a", type="filesystem", guid=1, createtxg=1)]
    src += [dict(name="p/a@s%d" % i, type="snapshot", guid=10 + i, createtxg=10 * i,
                 creation=NOW - 100 + i, userrefs=0) for i in range(1, 5)]
    dst_cols = columns_for()
    dst = [dict(name="c/a", type="filesystem", guid=2, createtxg=1),
           dict(name="c/a@s2", type="snapshot", guid=12, createtxg=3)]
    # (-d 0 lists the datasets, -d 1 their snapshots)
    return [("zfs list -Hp -t all -o " + ",".join(cols), listing(src[:1], cols)),
            ("zfs list -Hp -t snapshot,bookmark -o " + ",".join(cols), listing(src[1:], cols)),
            ("zfs list -Hp -t all -o " + ",".join(dst_cols), listing(dst[:1], dst_cols)),
            ("zfs list -Hp -t snapshot,bookmark -o " + ",".join(dst_cols), listing(dst[1:], dst_cols))]


def test_prune_reads_twice_per_side_then_bookmarks_once_and_destroys_once(recorded):
    runner = ScriptedRunner(recorded)
    r = pr.prune(runner, opts(keep_last=1, targets=["c/a"]), now=NOW)
    assert r["changed"] and r["destroyed"] == ["p/a@s1", "p/a@s3"]
    assert {"name": "p/a@s2", "reasons": ["base of c/a"]} in r["kept"]
    cmds = [" ".join(a) for a in runner.calls]
    # source -d 0 and -d 1, target -d 0 and -d 1, both bookmarks in one program, 1 destroy
    assert len(cmds) == 6
    assert cmds[4:] == ["zfs program -j p /dev/stdin p/a@s1 p/a#s1 p/a@s3 p/a#s3",
                        "zfs destroy p/a@s1,s3"]
    assert r["diff"]["before"]["snapshots"] == ["p/a@s%d" % i for i in range(1, 5)]
    assert r["diff"]["after"] == {"snapshots": ["p/a@s2", "p/a@s4"], "bookmarks": ["p/a#s1", "p/a#s3"]}


def test_check_mode_runs_only_reads(recorded):
    runner = ScriptedRunner(recorded, check_mode=True)
    r = pr.prune(runner, opts(keep_last=1, targets=["c/a"]), now=NOW)
    assert r["changed"] and r["destroyed"] == ["p/a@s1", "p/a@s3"]
    assert all(a[1] == "list" for a in runner.calls)
    assert [a["action"] for a in r["actions"]] == ["bookmark", "bookmark", "destroy"]
    assert r["actions"][-1]["command"] == "zfs destroy p/a@s1,s3"


def test_a_failing_destroy_names_what_was_done(recorded):
    runner = ScriptedRunner(recorded, fail="zfs destroy")
    with pytest.raises(PartialApply, match="dataset is busy") as err:
        pr.prune(runner, opts(keep_last=1), now=NOW)
    assert err.value.done == []


def test_resume_tokens_are_decoded_by_zfs_send():
    out = ("resume token contents:\nnvlist version: 0\n\tfromguid = 0x3e8\n\tobject = 0x2\n"
           "\toffset = 0x0\n\tbytes = 0x0\n\ttoguid = 0x3ea\n\ttoname = p/a@s3\n")
    runner = ScriptedRunner([("zfs send -nvt", out)])
    t = tree(Dataset("c/a", "filesystem", {"receive_resume_token": "1-abc-de-789"}), fs("c/b"))
    assert pr.resume_guids(runner, t) == {"c/a": 0x3ea}
    assert runner.calls == [["zfs", "send", "-nvt", "1-abc-de-789"]]


# the module layer


@pytest.mark.parametrize("args,message", [
    ({"name": "p/a"}, "no retention rule given"),
    ({"name": "p/a", "keep_last": -2}, "at least 0"),
    ({"name": "p/a", "daily": 3, "targets": ["p/a/x"]}, "overlaps"),
])
def test_module_refuses_before_touching_anything(args, message, fake_tools):
    log = fake_tools({"zfs": ""})
    r = run_module("zfs_prune", args)
    assert r.failed and message in r["msg"], r
    assert log.read_text() == ""
