"""zfs_key's validation and zfs_snapshot/zfs_bookmark name handling (pure)."""

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.keys import key_source, validate
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.snapshot import split_snapshot


def test_a_key_change_needs_a_generation_label():
    with pytest.raises(Refusal, match="needs key_id"):
        validate({"name": "p/er", "new_key": "ab" * 32})
    assert validate({"name": "p/er", "new_key": "ab" * 32, "key_id": "k2"}) is True
    assert validate({"name": "p/er", "state": "loaded"}) is False


@pytest.mark.parametrize("spec,message", [
    ({"name": "p/er", "inherit": True, "new_key_file": "/k"}, "takes no new key"),
    ({"name": "p/er", "key_id": "k2", "new_keyformat": "hex"}, "needs new_key or new_key_file"),
    ({"name": "p/er", "key": "x" * 8, "key_file": "/k"}, "not both"),
    ({"name": "p/er", "key_id": "k", "new_key_file": "/k", "pbkdf2iters": 1}, "100000"),
])
def test_validation(spec, message):
    with pytest.raises(Refusal, match=message):
        validate(spec)


def test_keys_travel_on_stdin_or_as_files():
    assert key_source({"key": "secret pass"}) == ("prompt", "secret pass\n")
    assert key_source({"new_key_file": "/k/new"}, "new_") == ("file:///k/new", None)
    assert key_source({}) == (None, None)


@pytest.mark.parametrize("name", ["p/ds@s1", "pool@x", "p/a/b@2026-11-23T10:00"])
def test_snapshot_names(name):
    assert split_snapshot(name)[0] == name.split("@")[0]


@pytest.mark.parametrize("name", ["p/ds", "p/ds@", "@s", "p/ds@a@b", "p/ds@a/b", "p/ds#b"])
def test_bad_snapshot_names(name):
    with pytest.raises(Refusal, match="not a snapshot name"):
        split_snapshot(name)
