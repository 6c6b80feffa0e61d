"""The sneakernet role's controller-side filters (plugins/filter/sneakernet.py)."""

from ansible_collections.blindvault.storage.plugins.filter import sneakernet as sn


def _ds(name, root=None, encryption="aes-256-gcm"):
    return {"name": name, "encryption": encryption if root else "off", "encryptionroot": root}


def _info(datasets, roots=()):
    return {"exists": True, "datasets": datasets, "encryption_roots": list(roots), "hazards": []}


VAULT = _info([_ds("a/vault", "a/vault"), _ds("a/vault/docs", "a/vault"),
               _ds("a/vault/own", "a/vault/own")],
              [{"name": "a/vault", "key_id": "k1", "members": ["a/vault", "a/vault/docs"]},
               {"name": "a/vault/own", "key_id": None, "members": ["a/vault/own"]}])


def test_items_defaults():
    items = sn.sneakernet_items([{"source": "a/x", "target": "c/x"},
                                 {"source": "a/y", "target": "c/y", "recursive": False,
                                  "exclude": ["a/y/z"]}])
    assert items[0] == {"source": "a/x", "target": "c/x", "recursive": True, "include": [],
                        "exclude": []}
    assert items[1]["recursive"] is False and items[1]["exclude"] == ["a/y/z"]


def test_whole_group_is_accepted():
    items = sn.sneakernet_items([{"source": "a/vault", "target": "c/vault"}])
    assert sn.sneakernet_refusals(items, [VAULT]) == []


def test_child_only_source_is_refused_naming_r1_and_the_root():
    items = sn.sneakernet_items([{"source": "a/vault/docs", "target": "c/docs", "recursive": False}])
    info = _info([_ds("a/vault/docs", "a/vault")])
    (msg,) = sn.sneakernet_refusals(items, [info])
    assert "safety rule R1" in msg and "member of encryption root a/vault" in msg
    assert "source: a/vault" in msg


def test_root_without_members_is_refused():
    items = sn.sneakernet_items([{"source": "a/vault", "target": "c/vault", "recursive": False}])
    (msg,) = sn.sneakernet_refusals(items, [VAULT])
    assert "recursive: false" in msg and "a/vault/docs" in msg and "R1" in msg


def test_unencrypted_or_lone_root_non_recursive_is_fine():
    items = sn.sneakernet_items([{"source": "a/plain", "target": "c/plain", "recursive": False},
                                 {"source": "a/vault/own", "target": "c/own", "recursive": False}])
    infos = [_info([_ds("a/plain")]), _info([_ds("a/vault/own", "a/vault/own")])]
    assert sn.sneakernet_refusals(items, infos) == []


def test_missing_source():
    items = sn.sneakernet_items([{"source": "a/gone", "target": "c/gone"}])
    assert sn.sneakernet_refusals(items, [{"exists": False}]) == ["a/gone does not exist"]


def test_key_suffix_follows_key_generations():
    first = sn.sneakernet_key_suffix([VAULT])
    assert first.startswith("-k") and len(first) == 10
    assert sn.sneakernet_key_suffix([VAULT]) == first  # deterministic: reruns find the snapshot
    changed = _info(VAULT["datasets"], [dict(VAULT["encryption_roots"][0], key_id="k2")])
    assert sn.sneakernet_key_suffix([changed]) != first
    assert sn.sneakernet_key_suffix([_info([_ds("a/plain")])]) == ""


def test_snapshots_one_call():
    items = sn.sneakernet_items([{"source": "a/x", "target": "c/x"},
                                 {"source": "b/y", "target": "c/y", "recursive": False}])
    assert sn.sneakernet_snapshots(items, "trip-1") == [
        {"name": "a/x@trip-1", "recursive": True}, {"name": "b/y@trip-1", "recursive": False}]


def test_verify_plan_keys_by_either_name():
    items = sn.sneakernet_items([{"source": "a/vault", "target": "c/vault"}])
    keys = [{"encryptionroot": "a/vault", "key_file": "/k/vault.hex"},
            {"encryptionroot": "c/vault/own", "key": "secret"}]
    (plan,) = sn.sneakernet_verify_plan(items, [VAULT], keys)
    assert plan["verify"] is True and plan["missing"] == []
    assert plan["keys"] == [{"encryptionroot": "c/vault", "key_file": "/k/vault.hex"},
                            {"encryptionroot": "c/vault/own", "key": "secret"}]
    (partial,) = sn.sneakernet_verify_plan(items, [VAULT], keys[:1])
    assert partial["verify"] is False and partial["missing"] == ["a/vault/own"]


def test_summary_and_table():
    items = sn.sneakernet_items([{"source": "a/vault", "target": "c/vault"}])
    rep = {"datasets": [{"source": "a/vault", "target": "c/vault", "action": "full"},
                        {"source": "a/vault/docs", "target": "c/vault/docs", "action": "full"}],
           "streams": [{"datasets": ["a/vault", "a/vault/docs"], "bytes_estimated": 4096}]}
    ver = {"ok": False, "datasets": [{"name": "c/vault", "status": "ok"},
                                     {"name": "c/vault/docs", "status": "failed"}]}
    rows = sn.sneakernet_summary(items, [rep], [ver], [{"verify": True}])
    assert [(r["dataset"], r["bytes_text"], r["verified"]) for r in rows] == [
        ("c/vault", "4.0 KiB", "ok"), ("c/vault/docs", "(stream)", "FAILED")]
    assert sn.sneakernet_summary(items, [rep], [{"skipped": True}], [{"verify": True}],
                                 True)[0]["verified"] == "planned"
    assert sn.sneakernet_summary(items, [rep], [{}], [{"verify": False}])[0]["verified"] == "no key"
    lines = sn.sneakernet_table(rows)
    assert lines[0].split() == ["dataset", "action", "bytes", "verified"]
    assert lines[2].split() == ["c/vault", "full", "4.0", "KiB", "ok"]


def test_files_carrier_verify_plan_reads_roots_on_the_target_and_the_summary_names_packages():
    items = sn.sneakernet_items([{"source": "a/vault", "target": "b/site-a/vault"}])
    after = [{"encryption_roots": [{"name": "b/site-a/vault"}, {"name": "b/site-a/vault/own"}]}]
    plan = sn.sneakernet_verify_plan(items, after, [{"encryptionroot": "b/site-a/vault", "key_file": "/k"}], True)
    assert plan[0]["roots"] == ["b/site-a/vault", "b/site-a/vault/own"]
    assert plan[0]["missing"] == ["b/site-a/vault/own"] and not plan[0]["verify"]
    keys = [{"encryptionroot": "a/vault", "key_file": "/k"}, {"encryptionroot": "a/vault/own", "key_file": "/o"}]
    by_source_name = sn.sneakernet_verify_plan(items, after, keys, True)
    assert by_source_name[0]["verify"] and [k["encryptionroot"] for k in by_source_name[0]["keys"]] == \
        ["b/site-a/vault", "b/site-a/vault/own"]
    imported = [{"packages": [{"package": "a%vault@trip3-site-b"}]}]
    rows = sn.sneakernet_files_summary(items, imported, [{}], plan, depart=False)
    assert rows[0]["action"] == "imported a%vault@trip3-site-b" and rows[0]["verified"] == "no key"
    departed = sn.sneakernet_items([{"source": "a/vault"}])
    exported = [{"dataset": "a/vault", "package": "/c/p1", "streams": [{"bytes": 2048}, {"bytes": 1024}]}]
    rows = sn.sneakernet_files_summary(departed, exported, [], [], depart=True)
    assert rows[0]["action"] == "package p1" and rows[0]["bytes"] == 3072 and departed[0]["target"] is None
    assert sn.sneakernet_files_summary(departed, [{"dataset": "a/vault", "package": None}], [], [], True)[0]["action"] \
        == "up to date"
