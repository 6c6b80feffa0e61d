"""zfs_replicate against real ZFS 2.1.11: the key-change matrix, relays, new members.

Every scenario ends by loading the replica's key and reading every file back: a replica is
only proven by decrypting it (R11). Key changes are made with bare ``zfs change-key`` (as
another tool would) so nothing but the data itself tells the replica what happened.
"""

import hashlib
import os
import shutil
import tempfile

import pytest

from helpers import node_name, sh
from secrets_guard import file_leaks
from zfs_scenarios import destroy_pool, key_opts, make_pool, new_key, pipe

# The matrix of key changes; make test runs the two that differ most (a visible keyformat change,
# and hex->hex, which no key-less check can see), make test-full all four.
KEYCHANGES = [pytest.param(old, new, id="%s-%s" % (old, new), marks=[pytest.mark.full] if full else [])
              for old, new, full in [("passphrase", "hex", False), ("hex", "hex", False),
                                     ("hex", "passphrase", True), ("passphrase", "passphrase", True)]]


@pytest.fixture(scope="module")
def pools():
    root = tempfile.mkdtemp(prefix="bvrep-", dir="/tmp")
    keydir = os.path.join(root, "keys")
    os.makedirs(keydir)
    names = {"a": make_pool(root, "bvra", "320M"), "carrier": make_pool(root, "bvrc", "320M"),
             "b": make_pool(root, "bvrb", "320M")}
    try:
        yield dict(names, root=root, keydir=keydir)
    finally:
        for n in names.values():
            destroy_pool(n)
        shutil.rmtree(root, ignore_errors=True)


def mountpoint(ds):
    return sh("zfs", "get", "-Hp", "-o", "value", "mountpoint", ds).stdout.strip()


def put(ds, name, size=64 << 10):
    data = os.urandom(size)
    with open(os.path.join(mountpoint(ds), name), "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def files_of(top):
    """{relative dataset path/file: sha256} of a mounted tree."""
    out = {}
    for ds in sh("zfs", "list", "-H", "-o", "name", "-r", "-t", "filesystem", top).stdout.split():
        mnt = mountpoint(ds)
        rel = ds[len(top):] or "/"
        for name in sorted(os.listdir(mnt)):
            path = os.path.join(mnt, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel + ":" + name] = hashlib.sha256(f.read()).hexdigest()
    return out


def prop(ds, name):
    return sh("zfs", "get", "-Hp", "-o", "value", name, ds).stdout.strip()


def snapshots(ds):
    return sh("zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", ds).stdout.split()


def read_back(top, key_file):
    """Load the replica's key, mount every dataset read-only, hash every file, put it all back."""
    roots = sorted({prop(d, "encryptionroot") for d in
                    sh("zfs", "list", "-H", "-o", "name", "-r", top).stdout.split()} - {"-"})
    loaded = []
    mounted = []
    try:
        for r in roots:
            if prop(r, "keystatus") != "available":
                sh("zfs", "load-key", "-L", "file://" + (key_file(r) if callable(key_file) else key_file), r)
                loaded.append(r)
        for ds in sh("zfs", "list", "-H", "-o", "name", "-r", "-t", "filesystem", top).stdout.split():
            if prop(ds, "mounted") != "yes":
                sh("zfs", "mount", "-o", "ro", ds)
                mounted.append(ds)
        return files_of(top)
    finally:
        for ds in reversed(mounted):
            sh("zfs", "unmount", ds, check=False)
        for r in loaded:
            sh("zfs", "unload-key", r, check=False)


def group(pools, name, keyformat, children=("child",)):
    """An encryption root with children and a file in each, on site A. Returns (root, key file)."""
    root = "%s/%s" % (pools["a"], name)
    key = new_key(pools["keydir"], name + ".k1", keyformat)
    sh("zfs", "create", "-o", "encryption=aes-256-gcm", *key_opts(keyformat, key), root)
    put(root, "root.bin")
    for c in children:
        sh("zfs", "create", "%s/%s" % (root, c))
        put("%s/%s" % (root, c), "data.bin")
    return root, key


def change_key(pools, root, name, keyformat):
    key = new_key(pools["keydir"], name, keyformat)
    sh("zfs", "change-key", *key_opts(keyformat, key), root)
    return key


@pytest.mark.parametrize("old,new", KEYCHANGES)
def test_child_only_after_key_change_brings_the_whole_group(module, pools, old, new):
    name = "kc-%s-%s" % (old, new)
    src, k1 = group(pools, name, old)
    dst = "%s/%s" % (pools["carrier"], name)
    seed = module("zfs_replicate", {"source": src, "target": dst})
    assert seed["changed"] and seed["snapshot_taken"], seed
    assert [s["kind"] for s in seed["streams"]] == ["full"]
    assert prop(dst + "/child", "encryptionroot") == dst
    assert prop(dst, "readonly") == "on" and prop(dst, "mounted") == "no"
    assert prop(dst, "blindvault:replica-of") == src

    k2 = change_key(pools, src, name + ".k2", new)
    put(src + "/child", "after-change.bin")
    before = snapshots(dst)

    # root only: refused, nothing touched
    res = module("zfs_replicate", {"source": src, "target": dst, "recursive": False})
    assert res.failed and "R1" in res["msg"] and "encryption root" in res["msg"]
    assert snapshots(dst) == before

    # child only: widened to the whole group, root first
    res = module("zfs_replicate", {"source": src + "/child", "target": dst + "/child"})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert res["source"] == src and res["target"] == dst
    assert "R1" in str(res["warnings"])
    assert res["streams"][0]["datasets"][0] == src  # the root first
    assert {d for s in res["streams"] for d in s["datasets"]} == {src, src + "/child"}
    assert all(s["status"] == "done" for s in res["streams"])
    assert res["hazards"] == []
    # the replica is proven by decrypting it with the new key: every byte as at the source
    assert read_back(dst, k2) == files_of(src)
    verified = module("zfs_verify", {"name": dst, "key_file": k2})
    assert verified["ok"] and {d["status"] for d in verified["datasets"]} == {"ok"}, verified
    # the old key no longer opens it
    assert sh("zfs", "load-key", "-n", "-L", "file://" + k1, dst, check=False).returncode != 0


def test_check_mode_plans_without_touching(module, pools, request):
    name = node_name(request, 30)
    src, _k = group(pools, name, "hex", children=("c1", "c2"))
    dst = "%s/%s" % (pools["carrier"], name)
    src_snaps = snapshots(src)
    res = module("zfs_replicate", {"source": src, "target": dst}, check=True)
    assert res["changed"] is True
    assert [d["action"] for d in res["datasets"]] == ["full", "full", "full"]
    assert res["streams"][0]["command"].startswith("zfs send -w -R %s@blindvault-" % src)
    assert "-x mountpoint" in res["streams"][0]["command"]
    assert snapshots(src) == src_snaps
    assert sh("zfs", "list", dst, check=False).returncode != 0

    module("zfs_replicate", {"source": src, "target": dst, "snapshot": "s1"})
    put(src + "/c1", "more.bin", 256 << 10)
    sh("zpool", "sync", pools["a"])  # written/referenced count what reached the pool
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "s2"}, check=True)
    acts = {d["source"]: (d["action"], d["base"]) for d in res["datasets"]}
    assert acts[src + "/c1"] == ("incremental", src + "/c1@s1")
    assert [s["kind"] for s in res["streams"]] == ["group"]  # all at s1: one -R -I stream
    assert res["streams"][0]["bytes_estimated"] >= 256 << 10
    assert snapshots(src) == [s for s in snapshots(src) if not s.endswith("@s2")]


def test_new_child_joins_its_root_and_reruns_are_idempotent(module, pools, request):
    name = node_name(request, 30)
    src, k1 = group(pools, name, "passphrase")
    dst = "%s/%s" % (pools["carrier"], name)
    assert not module("zfs_replicate", {"source": src, "target": dst, "snapshot": "r1"}).failed
    sh("zfs", "create", src + "/late")
    put(src + "/late", "late.bin")
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "r2"})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert [s["kind"] for s in res["streams"]] == ["group"]
    assert prop(dst + "/late", "encryptionroot") == dst
    assert read_back(dst, k1) == files_of(src)
    again = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "r2"})
    assert again["changed"] is False, again
    assert {d["action"] for d in again["datasets"]} == {"up to date"}
    # holds and bookmarks moved to the newest common base
    holds = sh("zfs", "holds", "-H", src + "@r2").stdout
    assert "blindvault:" + dst in holds
    assert "blindvault:" + dst not in sh("zfs", "holds", "-H", src + "@r1").stdout
    assert src + "#r2" in sh("zfs", "list", "-H", "-o", "name", "-t", "bookmark", "-r", src).stdout


def test_relay_site_a_carrier_site_b_with_a_key_change_between_trips(module, pools, request):
    name = node_name(request, 30)
    a, k1 = group(pools, name, "hex", children=("docs", "docs/deep"))
    c = "%s/%s" % (pools["carrier"], name)
    b = "%s/%s" % (pools["b"], name)
    # trip 1
    assert not module("zfs_replicate", {"source": a, "target": c, "snapshot": "trip1"}).failed
    hop2 = module("zfs_replicate", {"source": c, "target": b, "snapshot": "ignored-%H"})
    assert not hop2.failed, hop2
    assert hop2["source_is_replica"] and not hop2["snapshot_taken"] and hop2["snapshot"] == "trip1"
    assert snapshots(c) == [c + "@trip1", c + "/docs@trip1", c + "/docs/deep@trip1"]
    # key change at A, new data, trip 2
    k2 = change_key(pools, a, name + ".k2", "hex")
    put(a + "/docs/deep", "new.bin")
    assert not module("zfs_replicate", {"source": a, "target": c, "snapshot": "trip2"}).failed
    hop2 = module("zfs_replicate", {"source": c, "target": b})
    assert not hop2.failed and hop2["snapshot"] == "trip2", hop2
    assert not [s for s in snapshots(c) if "trip" not in s]  # nothing taken on the carrier
    # the carrier holds the group but none of its keys, neither as text nor as raw key bytes
    sh("zpool", "sync", pools["carrier"])
    keys = set()
    for k in (k1, k2):
        with open(k) as f:
            keys.add(f.read().strip())
    assert not file_leaks(os.path.join(pools["root"], pools["carrier"] + ".vdev"), keys)
    assert read_back(b, k2) == files_of(a)
    assert read_back(c, k2) == files_of(a)
    # nothing new: unchanged at both hops
    assert module("zfs_replicate", {"source": a, "target": c, "snapshot": "trip2"})["changed"] is False
    assert module("zfs_replicate", {"source": c, "target": b})["changed"] is False
    # the carrier keeps both its upstream and downstream bases held
    tags = sh("zfs", "holds", "-H", c + "@trip2").stdout
    assert "blindvault:" + a in tags and "blindvault:" + b in tags


def test_nested_encryption_roots(module, pools, request):
    name = node_name(request, 30)
    outer, k_outer = group(pools, name, "passphrase", children=("plain",))
    inner = outer + "/inner"
    k_inner = new_key(pools["keydir"], name + ".inner", "hex")
    sh("zfs", "create", "-o", "encryption=aes-256-gcm", *key_opts("hex", k_inner), inner)
    sh("zfs", "create", inner + "/c")
    put(inner + "/c", "x.bin")
    dst = "%s/%s" % (pools["carrier"], name)
    assert not module("zfs_replicate", {"source": outer, "target": dst, "snapshot": "n1"}).failed
    assert prop(dst + "/inner", "encryptionroot") == dst + "/inner"
    assert prop(dst + "/inner/c", "encryptionroot") == dst + "/inner"
    k_outer2 = change_key(pools, outer, name + ".o2", "hex")
    k_inner2 = change_key(pools, inner, name + ".i2", "passphrase")
    put(inner + "/c", "y.bin")
    res = module("zfs_replicate", {"source": inner + "/c", "target": dst + "/inner/c",
                                   "snapshot": "n2"})
    assert not res.failed and res["source"] == inner, res
    res = module("zfs_replicate", {"source": outer, "target": dst, "snapshot": "n2"})
    assert res.failed and "atomic" in res["msg"]  # n2 was taken of inner's group only
    res = module("zfs_replicate", {"source": outer, "target": dst, "snapshot": "n3"})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    keys = {dst: k_outer2, dst + "/inner": k_inner2}
    assert read_back(dst, keys.get) == files_of(outer)


def test_refusals_leave_the_target_untouched(module, pools, request):
    name = node_name(request, 30)
    src, _k = group(pools, name, "hex")
    dst = "%s/%s" % (pools["carrier"], name)
    module("zfs_replicate", {"source": src, "target": dst, "snapshot": "f1"})
    # a child-only source whose target does not mirror the group
    res = module("zfs_replicate", {"source": src + "/child", "target": pools["carrier"] + "/elsewhere"})
    assert res.failed and "source: %s" % src in res["msg"]
    # a target with a newer snapshot: refused, then listed, then rolled back on request
    sh("zfs", "snapshot", dst + "/child@local")
    put(src + "/child", "f2.bin")
    before = snapshots(dst)
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "f2"})
    assert res.failed and "force_rollback" in res["msg"] and snapshots(dst) == before
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "f2",
                                   "force_rollback": True}, check=True)
    child = [d for d in res["datasets"] if d["source"] == src + "/child"][0]
    assert child["destroys"] == [dst + "/child@local"] and snapshots(dst) == before
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "f2",
                                   "force_rollback": True})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert dst + "/child@local" not in snapshots(dst)
    # bad input: a clear message, no traceback
    res = module("zfs_replicate", {"source": src, "target": src + "/x"})
    assert res.failed and "overlap" in res["msg"]
    res = module("zfs_replicate", {"source": src, "target": dst, "raw": "maybe"})
    assert res.failed and "raw must be" in res["msg"]
    res = module("zfs_replicate", {"source": pools["a"] + "/nope", "target": dst})
    assert res.failed and "does not exist" in res["msg"]


def test_a_carrier_exported_mid_run_fails_clearly_and_the_rerun_completes(
        module, pools, request, tmp_path, monkeypatch):
    """The carrier pool goes away (exported, or pulled) after the run has read its state, just
    as the receive starts (ZFS itself refuses to export a pool during a receive: "pool is
    busy"). The run fails naming the carrier, the source keeps everything, and once the carrier
    is imported again the same task completes and the replica decrypts byte-equal."""
    name = node_name(request, 30)
    src, key = group(pools, name, "hex")
    root = tempfile.mkdtemp(prefix="bvrx-", dir="/tmp")
    carrier = make_pool(root, "bvrx", "192M")
    try:
        dst = "%s/%s" % (carrier, name)
        shims = tmp_path / "shims"
        shims.mkdir()
        marker = tmp_path / "exported"
        (shims / "zfs").write_text(
            '#!/bin/sh\ncase "$1" in recv|receive)\n'
            '  [ -e %s ] || { touch %s; zpool export %s || exit 99; } ;;\nesac\nexec %s "$@"\n'
            % (marker, marker, carrier, shutil.which("zfs")))
        (shims / "zfs").chmod(0o755)
        monkeypatch.setenv("PATH", "%s:%s" % (shims, os.environ["PATH"]))
        args = {"source": src, "target": dst, "snapshot": "x1"}
        before = files_of(src)
        res = module("zfs_replicate", args)
        assert marker.exists() and res.failed, res
        assert carrier in res["msg"] and "Traceback" not in str(res), res["msg"]
        assert sh("zpool", "list", "-H", carrier, check=False).returncode != 0  # it really went
        assert files_of(src) == before

        sh("zpool", "import", "-d", root, "-R", os.path.join(root, "alt"), "-o", "cachefile=none",
           carrier)
        res = module("zfs_replicate", args)
        assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
        assert res["hazards"] == []
        assert read_back(dst, key) == files_of(src)
        assert module("zfs_replicate", args)["changed"] is False
    finally:
        destroy_pool(carrier)
        shutil.rmtree(root, ignore_errors=True)


def cut_stream(send, recv, keep):
    """send | head -c keep | recv -s: an interrupted receive, deterministically."""
    import subprocess
    p1 = subprocess.Popen(send, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p2 = subprocess.Popen(["head", "-c", str(keep)], stdin=p1.stdout, stdout=subprocess.PIPE)
    p1.stdout.close()
    p3 = subprocess.run(recv, stdin=p2.stdout, capture_output=True, text=True, check=False)
    p2.stdout.close()
    p1.wait()
    p2.wait()
    assert p3.returncode != 0, "the cut stream was received whole"
    return p3.stderr


def stream_size(*send_args):
    out = sh("zfs", "send", "-nvP", *send_args).stdout
    return int([l for l in out.splitlines() if l.startswith("size")][-1].split("\t")[1])


def test_an_interrupted_incremental_resumes_from_its_token(module, pools, request):
    name = node_name(request, 30)
    src, k1 = group(pools, name, "hex")
    dst = "%s/%s" % (pools["carrier"], name)
    assert not module("zfs_replicate", {"source": src, "target": dst, "snapshot": "r1"}).failed
    put(src, "big.bin", 2 << 20)
    sh("zfs", "snapshot", "-r", src + "@r2")
    size = stream_size("-w", "-I", "@r1", src + "@r2")
    cut_stream(["zfs", "send", "-w", "-I", "@r1", src + "@r2"], ["zfs", "recv", "-s", "-u", dst],
               size // 2)
    assert prop(dst, "receive_resume_token") not in ("", "-")
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "r2"})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert res["resumed"] == [dst]
    assert prop(dst, "receive_resume_token") == "-"
    assert read_back(dst, k1) == files_of(src)


def test_an_interrupted_replication_stream_with_a_new_child_ends_under_its_root(module, pools, request):
    name = node_name(request, 30)
    src, k1 = group(pools, name, "passphrase")
    dst = "%s/%s" % (pools["carrier"], name)
    assert not module("zfs_replicate", {"source": src, "target": dst, "snapshot": "r1"}).failed
    sh("zfs", "create", src + "/late")
    put(src + "/late", "late.bin", 2 << 20)
    sh("zfs", "snapshot", "-r", src + "@r2")
    size = stream_size("-w", "-R", "-I", "@r1", src + "@r2")
    cut_stream(["zfs", "send", "-w", "-R", "-I", "@r1", src + "@r2"],
               ["zfs", "recv", "-s", "-u", dst], size - (1 << 20))
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "r3"})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert res["resumed"], res
    assert prop(dst + "/late", "encryptionroot") == dst  # R5: not left its own encryption root
    assert res["hazards"] == []
    assert read_back(dst, k1) == files_of(src)


def test_a_seed_cut_in_its_root_resumes_and_brings_the_members_with_a_new_snapshot(module, pools, request):
    """The power-cut case: a full -R seed cut while the root's stream flows; rerun with the SAME
    snapshot name (a daily trip name): the root's receive resumes, and since only an -R -I
    stream can bring the members under their root, a fresh snapshot carries them (R1)."""
    name = node_name(request, 30)
    src, k1 = group(pools, name, "hex")
    put(src, "root-big.bin", 3 << 20)
    dst = "%s/%s" % (pools["carrier"], name)
    sh("zfs", "snapshot", "-r", src + "@day1")
    cut_stream(["zfs", "send", "-w", "-R", src + "@day1"], ["zfs", "recv", "-s", "-u", dst], 1 << 20)
    assert prop(dst, "receive_resume_token") not in ("", "-")
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "day1"})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert res["resumed"] == [dst] and res["snapshot"].startswith("day1-") and res["snapshot_taken"]
    assert "interrupted seed" in str(res["warnings"]), res["warnings"]
    assert prop(dst + "/child", "encryptionroot") == dst and res["hazards"] == []
    assert read_back(dst, k1) == files_of(src)
    assert module("zfs_replicate", {"source": src, "target": dst, "snapshot": "day1"})["changed"] is False


def test_an_orphan_blocks_its_group_until_allowed(module, pools, request):
    name = node_name(request, 30)
    src, k1 = group(pools, name, "hex", children=("keep", "gone"))
    dst = "%s/%s" % (pools["carrier"], name)
    assert not module("zfs_replicate", {"source": src, "target": dst, "snapshot": "o1"}).failed
    sh("zfs", "release", "blindvault:" + dst, src + "/gone@o1")  # replication holds its base
    sh("zfs", "destroy", "-r", src + "/gone")
    k2 = change_key(pools, src, name + ".k2", "hex")
    before = snapshots(dst)
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "o2"})
    assert res.failed and "R6" in res["msg"] and snapshots(dst) == before
    assert [h["dataset"] for h in res["hazards"] if h["reason"] == "orphan"] == [dst + "/gone"]
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "o2",
                                   "allow_orphans": True})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert prop(dst + "/gone", "type") == "filesystem"  # an orphan is named, never destroyed
    assert read_back_only(dst, {dst: k2}, [dst, dst + "/keep"]) == files_of(src)


def read_back_only(top, keys, datasets):
    """read_back for some datasets of a tree (an orphan cannot be mounted with the new key)."""
    sh("zfs", "load-key", "-L", "file://" + keys[top], top)
    try:
        out = {}
        for ds in datasets:
            sh("zfs", "mount", "-o", "ro", ds)
            try:
                mnt = mountpoint(ds)
                for f in sorted(os.listdir(mnt)):
                    if not os.path.isfile(os.path.join(mnt, f)):
                        continue
                    with open(os.path.join(mnt, f), "rb") as fh:
                        out[(ds[len(top):] or "/") + ":" + f] = hashlib.sha256(fh.read()).hexdigest()
            finally:
                sh("zfs", "unmount", ds)
        return out
    finally:
        sh("zfs", "unload-key", top, check=False)


def test_change_key_inherit_at_the_source_is_refused_with_the_fix(module, pools, request):
    name = node_name(request, 30)
    outer, _k = group(pools, name, "hex", children=())
    inner = outer + "/inner"
    k_inner = new_key(pools["keydir"], name + ".inner", "hex")
    sh("zfs", "create", "-o", "encryption=aes-256-gcm", *key_opts("hex", k_inner), inner)
    dst = "%s/%s" % (pools["carrier"], name)
    assert not module("zfs_replicate", {"source": outer, "target": dst, "snapshot": "i1"}).failed
    sh("zfs", "change-key", "-i", inner)
    before = snapshots(dst)
    res = module("zfs_replicate", {"source": outer, "target": dst, "snapshot": "i2"})
    assert res.failed and "change-key" in res["msg"] and dst + "/inner" in res["msg"]
    assert snapshots(dst) == before


def test_a_replica_damaged_by_bare_commands_is_reported_and_repaired(module, pools, request):
    name = node_name(request, 30)
    src, _k1 = group(pools, name, "passphrase")
    dst = "%s/%s" % (pools["carrier"], name)
    assert not module("zfs_replicate", {"source": src, "target": dst, "snapshot": "d1"}).failed
    k2 = change_key(pools, src, name + ".k2", "hex")
    sh("zfs", "snapshot", "-r", src + "@d2")
    pipe(["zfs", "send", "-w", "-i", "@d1", src + "/child@d2"], ["zfs", "recv", "-u", "-F", dst + "/child"])
    info = module("zfs_info", {"name": dst})
    assert [(h["dataset"], h["reason"]) for h in info["hazards"]] == [(dst + "/child", "keyformat")]
    damaged = module("zfs_verify", {"name": dst, "fail_on_error": False})  # the old key, from keylocation
    assert {d["name"]: d["status"] for d in damaged["datasets"]} == {dst: "ok", dst + "/child": "failed"}
    res = module("zfs_replicate", {"source": src, "target": dst, "snapshot": "d3"})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert res["hazards"] == []
    assert read_back(dst, k2) == files_of(src)
    assert module("zfs_verify", {"name": dst, "key_file": k2, "mode": "files",
                                 "compare_files_with": src})["ok"]


def test_unencrypted_data_is_encrypted_on_an_encrypted_carrier(module, pools, request):
    """R9, encrypt on the way: an unencrypted site's datasets go non-raw into the carrier's
    encrypted parent and are encrypted there under the carrier's root (its key loaded by
    target_key_file for the receive only), then travel raw to site B, where they verify with
    the carrier root's key."""
    name = node_name(request, 30)
    plain = "%s/%s" % (pools["a"], name)
    sh("zfs", "create", plain)
    sh("zfs", "create", plain + "/sub")
    put(plain + "/sub", "p.bin")
    put(plain, "top.bin")
    enc = "%s/%s-enc" % (pools["carrier"], name)
    key = new_key(pools["keydir"], name + ".carrier", "hex")
    wrong = new_key(pools["keydir"], name + ".wrong", "hex")
    sh("zfs", "create", "-o", "encryption=aes-256-gcm", *key_opts("hex", key), enc)
    sh("zfs", "unmount", enc)
    sh("zfs", "unload-key", enc)
    res = module("zfs_replicate", {"source": plain, "target": enc + "/plain", "snapshot": "u1"})
    assert res.failed and "R9" in res["msg"] and "target_key_file" in res["msg"]
    res = module("zfs_replicate", {"source": plain, "target": enc + "/plain", "snapshot": "u1",
                                   "target_key_file": wrong})
    assert res.failed and "does not open the key" in res["msg"], res
    assert snapshots(plain) == [] and prop(enc, "keystatus") == "unavailable"
    planned = module("zfs_replicate", {"source": plain, "target": enc + "/plain", "snapshot": "u1",
                                       "target_key_file": key}, check=True)
    assert not planned.failed and planned["changed"], planned.get("msg")
    assert prop(enc, "keystatus") == "unavailable" and snapshots(plain) == []
    res = module("zfs_replicate", {"source": plain, "target": enc + "/plain", "snapshot": "u1",
                                   "target_key_file": key})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert res["target_key_loaded"] == enc and prop(enc, "keystatus") == "unavailable"  # unloaded after
    assert "-w" not in res["streams"][0]["command"].split()
    assert prop(enc + "/plain/sub", "encryptionroot") == enc
    put(plain + "/sub", "q.bin")
    res = module("zfs_replicate", {"source": plain, "target": enc + "/plain", "snapshot": "u2",
                                   "target_key_file": key})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert prop(enc, "keystatus") == "unavailable"
    assert module("zfs_replicate", {"source": plain, "target": enc + "/plain", "snapshot": "u2",
                                    "target_key_file": key})["changed"] is False
    # onward to site B raw (no key at all), where the carrier root's key proves it
    at_b = "%s/%s-enc" % (pools["b"], name)
    hop = module("zfs_replicate", {"source": enc, "target": at_b})
    assert not hop.failed, "%s\n%s" % (hop.get("msg"), hop.get("datasets"))
    assert all("-w" in s["command"].split() for s in hop["streams"]) and hop["hazards"] == []
    assert prop(at_b + "/plain/sub", "encryptionroot") == at_b
    assert read_back(at_b + "/plain", lambda root: key) == files_of(plain)
    assert read_back(enc + "/plain", lambda root: key) == files_of(plain)


def test_pruning_keeps_the_replica_base_so_the_next_run_is_incremental(module, pools, request):
    """zfs_prune with `targets` never takes the newest common base, even without holds: the
    next zfs_replicate goes incremental from it (R4), carrier included."""
    name = node_name(request, 30)
    a, k1 = group(pools, name, "hex")
    c = "%s/%s" % (pools["carrier"], name)
    b = "%s/%s" % (pools["b"], name)
    assert not module("zfs_replicate", {"source": a, "target": c, "snapshot": "p1", "hold": False}).failed
    assert not module("zfs_replicate", {"source": c, "target": b, "hold": False}).failed
    for s in ("h1", "h2", "h3"):  # local snapshots the carrier never saw
        put(a + "/child", s + ".bin")
        sh("zfs", "snapshot", "-r", "%s@%s" % (a, s))
    pruned = module("zfs_prune", {"name": a, "recursive": True, "keep_last": 1, "targets": [c]})
    assert not pruned.failed, "%s" % pruned.get("msg")
    assert sorted(pruned["destroyed"]) == sorted(
        "%s%s@%s" % (a, rel, s) for rel in ("", "/child") for s in ("h1", "h2"))
    assert snapshots(a) == [a + "@p1", a + "@h3", a + "/child@p1", a + "/child@h3"]
    # the carrier (a replica) is pruned of nothing its downstream site still needs
    carrier = module("zfs_prune", {"name": c, "recursive": True, "keep_last": 1, "targets": [b]})
    assert not carrier.failed and carrier["destroyed"] == [], carrier
    res = module("zfs_replicate", {"source": a, "target": c, "snapshot": "p2"})
    assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("datasets"))
    assert [s["kind"] for s in res["streams"]] == ["group"] and "-I" in res["streams"][0]["command"]
    hop = module("zfs_replicate", {"source": c, "target": b})
    assert not hop.failed and hop["snapshot"] == "p2", "%s" % hop.get("msg")
    assert read_back(b, k1) == files_of(a)
    # now the old base may go on the carrier: B has p2
    carrier = module("zfs_prune", {"name": c, "recursive": True, "keep_last": 1, "targets": [b]})
    assert not carrier.failed and c + "@p1" in carrier["destroyed"], carrier
    assert module("zfs_replicate", {"source": c, "target": b})["changed"] is False


def test_decrypt_resends_a_group_under_the_targets_encryption_root(module, pools, request):
    """The seeds' recovery path: raw: false + decrypt: true re-sends decrypted data (keys loaded
    at the source) so that it is encrypted again under the target's own root."""
    name = node_name(request, 30)
    src, _k1 = group(pools, name, "passphrase")
    enc = "%s/%s-new" % (pools["carrier"], name)
    key = new_key(pools["keydir"], name + ".newroot", "hex")
    sh("zfs", "create", "-o", "encryption=aes-256-gcm", *key_opts("hex", key), enc)
    refused = module("zfs_replicate", {"source": src, "target": enc + "/data", "raw": False})
    assert refused.failed and "decrypt: true" in refused["msg"], "%s" % refused.get("msg")
    assert not sh("zfs", "list", "-H", "-o", "name", "-r", enc).stdout.split()[1:]
    try:
        res = module("zfs_replicate", {"source": src, "target": enc + "/data", "raw": False,
                                       "decrypt": True, "snapshot": "x1"})
        assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("streams"))
        assert all("-w" not in s["command"].split() for s in res["streams"])
        assert {prop(d, "encryptionroot") for d in (enc + "/data", enc + "/data/child")} == {enc}
        put(src + "/child", "later.bin")
        res = module("zfs_replicate", {"source": src, "target": enc + "/data", "raw": False,
                                       "decrypt": True, "snapshot": "x2"})
        assert not res.failed, "%s\n%s" % (res.get("msg"), res.get("streams"))
    finally:
        sh("zfs", "unmount", enc, check=False)
        sh("zfs", "unload-key", enc, check=False)
    assert read_back(enc + "/data", lambda root: key) == files_of(src)
