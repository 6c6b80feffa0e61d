"""Reading a zfs send stream's first records (the lab's test_zfs_stream.py reads real ones), and
importing unsigned `zfs send -R | age -r` streams planned from them."""

import os
import struct
import subprocess

import pytest

from ansible_collections.blindvault.storage.plugins.module_utils.keys import age
from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import sendstream, stream
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import Dataset, Tree


def _xdr_string(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b + bytes(-len(b) % 4)


def _nvlist_body(d):
    out = struct.pack(">ii", 0, 1)
    for name, value in d.items():
        if value is True:
            dtype, nelem, val = 1, 0, b""
        elif isinstance(value, int):
            dtype, nelem, val = 8, 1, struct.pack(">Q", value)
        elif isinstance(value, str):
            dtype, nelem, val = 9, 1, _xdr_string(value)
        elif isinstance(value, dict):
            dtype, nelem, val = 19, 1, _nvlist_body(value)
        else:  # an array type the reader skips
            dtype, nelem, val = 16, len(value), b"".join(struct.pack(">Q", v) for v in value)
        head = _xdr_string(name) + struct.pack(">ii", dtype, nelem)
        out += struct.pack(">ii", 8 + len(head) + len(val), 0) + head + val
    return out + struct.pack(">ii", 0, 0)


def pack_nvlist(d):
    return bytes([1, 1, 0, 0]) + _nvlist_body(d)


def record(drr_type, payload=b"", order="<", hdrtype=1, features=0, ctime=0, toguid=0, fromguid=0, toname=""):
    if drr_type == sendstream.DRR_BEGIN:
        body = struct.pack(order + "IIQQQIIQQ", drr_type, len(payload), sendstream.MAGIC,
                           hdrtype | (features << 2), ctime, 2, 0, toguid, fromguid)
        body += toname.encode().ljust(256, b"\0")
    else:
        body = struct.pack(order + "II", drr_type, len(payload))
    return body.ljust(sendstream.RECORD, b"\0") + payload


def fss_entry(name, snaps, encroot=False):
    d = {"name": name, "parentfromsnap": 0, "props": {}, "snaps": snaps}
    if encroot:
        d["is_encroot"] = True
    return d


def compound(top, tosnap, fss, fromsnap=None, order="<", keydata=True, ctime=1700000000):
    hdr = {"tosnap": tosnap, "fss": {"0x%x" % (i + 1): fs for i, fs in enumerate(fss)}}
    if fromsnap:
        hdr["fromsnap"] = fromsnap
    native = b"\0\1\0\0" + bytes(40)  # substreams carry native-encoded nvlists: never unpacked
    return (record(0, pack_nvlist(hdr), order, hdrtype=2, toname="%s@%s" % (top, tosnap))
            + record(5, order=order)
            + record(0, native, order, hdrtype=1, features=(1 << 24) if keydata else 0,
                     ctime=ctime, toguid=101, toname="%s@%s" % (top, tosnap))
            + b"\x11" * 5000)


GROUP = [fss_entry("a/er", {"s0": 100, "s1": 101}, encroot=True), fss_entry("a/er/c", {"s0": 200, "s1": 201}),
         fss_entry("a/er/c/d", {"s1": 301})]


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_compound_stream_names_its_group_snapshots_and_guids(order):
    h = sendstream.read_header(compound("a/er", "s1", list(reversed(GROUP)), fromsnap="s0", order=order))
    assert h.compound and h.dataset == "a/er" and h.tosnap == "s1" and h.fromsnap == "s0"
    assert [fs["name"] for fs in h.filesystems()] == ["a/er", "a/er/c", "a/er/c/d"]  # top first
    assert h.top()["snaps"] == {"s0": 100, "s1": 101} and h.top_encrypted and h.first.raw
    assert h.first.creation_time == 1700000000


def test_a_plain_stream_and_non_streams():
    h = sendstream.read_header(record(0, toname="a/er/c@s1", toguid=7) + b"\0" * 100)
    assert not h.compound and h.dataset == "a/er/c" and h.tosnap == "s1" and h.top() is None
    with pytest.raises(sendstream.StreamFormatError, match="not a zfs send stream"):
        sendstream.read_header(b"hello" * 100)
    with pytest.raises(sendstream.StreamFormatError, match="ends inside"):
        sendstream.read_header(compound("a/er", "s1", GROUP)[:400])
    cut = record(0, pack_nvlist({"tosnap": "s1"})[:-12] + bytes(4), hdrtype=2, toname="a/er@s1")
    with pytest.raises(sendstream.StreamFormatError):
        sendstream.read_header(cut + record(5))
    assert sendstream.unpack_nvlist(pack_nvlist({"skip": [1, 2, 3], "keep": "x"})) == {"keep": "x"}


def test_hostile_headers_are_refused_quickly_not_parsed_forever():
    """A nested list pointing past its pair (shared by every pair of every level) would take
    exponential time; nested lists must fill their own pair exactly."""
    inner = _nvlist_body({"x": 1})
    level = inner
    for _level in range(20):  # each level's pair claims only 16 bytes but its list runs on
        head = _xdr_string("n") + struct.pack(">ii", 19, 1)
        level = struct.pack(">ii", 0, 1) + struct.pack(">ii", 8 + len(head), 0) + head + level
    with pytest.raises(sendstream.StreamFormatError):
        sendstream.unpack_nvlist(bytes([1, 1, 0, 0]) + level)
    huge = struct.pack("<II", 0, 0xFFFFFFF0) + struct.pack("<Q", sendstream.MAGIC)
    with pytest.raises(sendstream.StreamFormatError, match="more than"):
        sendstream.needed(huge.ljust(sendstream.RECORD, b"\0"))


def test_needed_grows_until_the_first_substream_is_in():
    data = compound("a/er", "s1", GROUP)
    n = 0
    while n < sendstream.needed(data[:n]):
        n = sendstream.needed(data[:n])
    assert sendstream.read_header(data[:n]).first is not None


def test_real_streams_from_zfs_2_1(tmp_path):
    """Headers of real `zfs send -w -R` and `zfs send -w` streams (ZFS 2.1.11, lab VM): an
    encryption root `dpool/er` with a child, snapshot @s1."""
    fixtures = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "sendstream")
    h = sendstream.read_header(open(os.path.join(fixtures, "raw-R-full.head"), "rb").read())
    assert h.compound and h.dataset == "dpool/er" and h.tosnap == "s1" and h.fromsnap is None
    assert [fs["name"] for fs in h.filesystems()] == ["dpool/er", "dpool/er/c"]
    assert h.top()["is_encroot"] and "is_encroot" not in h.filesystems()[1] and h.top_encrypted
    assert h.first.raw and h.first.toname == "dpool/er@s1"
    assert h.top()["snaps"]["s1"] == h.first.toguid
    plain = sendstream.read_header(open(os.path.join(fixtures, "raw-plain.head"), "rb").read())
    assert not plain.compound and plain.dataset == "dpool/er" and plain.tosnap == "s1" and plain.begin.raw


# -- import_ with allow_unsigned, through the stand-in zfs -----------------------------------------

def _put(site, name, data):
    (site["tmp"] / "carrier" / name).write_bytes(age.encrypt(data, [site["rcpt"]]))


def _import(site, target_trees, **kw):
    site["trees"]["b/er"] = list(target_trees)
    site["trees"]["b"] = [Tree((Dataset("b", "filesystem", {"encryption": "off", "written": 0}),))]
    o = stream.ImportOptions("a/er", "b/er", str(site["tmp"] / "carrier"), [], str(site["tmp"] / "id"),
                             allow_unsigned=True, **kw)
    return stream.import_(site["runner"](), o)


def test_an_unsigned_group_stream_is_planned_from_its_header_and_received(site):
    full = compound("a/er", "s0", [fss_entry("a/er", {"s0": 100}, True), fss_entry("a/er/c", {"s0": 200})])
    _put(site, "r0.zfs.age", full)
    _put(site, "other.age", compound("z/other", "s0", [fss_entry("z/other", {"s0": 9}, True)]))
    res = _import(site, [Tree(()), Tree(())])
    assert res["changed"] and [p["package"] for p in res["packages"]] == ["r0.zfs.age"]
    assert res["packages"][0]["signed"] is False and "unsigned" in res["warnings"][0]
    assert (site["tmp"] / "recv-b%er").read_bytes() == full  # decrypted byte for byte
    assert "recv -u -o readonly=on -o blindvault:replica-of=a/er -x mountpoint b/er" in \
        (site["tmp"] / "log").read_text()

    # the next one chains from what the target has (by guid); the received one is skipped
    _put(site, "r1.zfs.age", compound("a/er", "s1", GROUP, fromsnap="s0", ctime=1700000100))
    have = Tree((Dataset("b/er", "filesystem", {"written": 0}), Dataset("b/er@s0", "snapshot", {"guid": 100}),
                 Dataset("b/er/c", "filesystem", {"written": 0}), Dataset("b/er/c@s0", "snapshot", {"guid": 200})))
    res = _import(site, [have, have])
    assert res["skipped"] == ["r0.zfs.age"] and [p["package"] for p in res["packages"]] == ["r1.zfs.age"]
    assert res["packages"][0]["streams"][0]["kind"] == "group"


def test_unsigned_parts_of_a_group_and_damaged_files_are_refused_before_any_receive(site):
    _put(site, "child.age", compound("a/er/c", "s0", [fss_entry("a/er/c", {"s0": 200})]))
    with pytest.raises(Refusal, match=r"inside group a/er.*R1"):
        _import(site, [Tree(())])
    os.unlink(site["tmp"] / "carrier" / "child.age")
    _put(site, "root-only.age", record(0, toname="a/er@s0", features=1 << 24) + b"\0" * 1000)
    with pytest.raises(Refusal, match=r"not zfs send -R"):
        _import(site, [Tree(())])
    os.unlink(site["tmp"] / "carrier" / "root-only.age")
    _put(site, "member.age", compound("a/er", "s0", [fss_entry("a/er", {"s0": 100})]))  # encrypted, not a root
    with pytest.raises(Refusal, match="not an encryption root"):
        _import(site, [Tree(())])
    os.unlink(site["tmp"] / "carrier" / "member.age")
    _put(site, "r0.age", compound("a/er", "s0", [fss_entry("a/er", {"s0": 100}, True)]) + b"\x22" * 200000)
    path = site["tmp"] / "carrier" / "r0.age"
    data = bytearray(path.read_bytes())
    data[-100] ^= 1  # the last chunk: the header still reads, the check pass finds it
    path.write_bytes(bytes(data))
    with pytest.raises(Refusal, match=r"damaged.*nothing was received"):
        _import(site, [Tree(()), Tree(())])
    assert not (site["tmp"] / "log").exists()  # zfs never ran


def test_without_allow_unsigned_an_age_file_alone_is_not_imported(site):
    _put(site, "r0.age", compound("a/er", "s0", [fss_entry("a/er", {"s0": 100}, True)]))
    o = stream.ImportOptions("a/er", "b/er", str(site["tmp"] / "carrier"), [], str(site["tmp"] / "id"))
    with pytest.raises(Refusal, match="trusted_signers"):
        stream.import_(site["runner"](), o)


@pytest.mark.parametrize("fss,hdr_extra,match", [
    ([{"name": 5, "snaps": {"s0": 1}}, fss_entry("a/er", {"s0": 100}, True)], {}, None),
    ([fss_entry("a/er", {"s0": 100}, True)], {"fromsnap": {"x": 1}}, "not understood|outside group"),
    ([{"name": "a/er", "snaps": 7, "is_encroot": True}], {}, "outside group"),
])
def test_type_confused_headers_get_a_clear_refusal(site, fss, hdr_extra, match):
    hdr = {"tosnap": "s0", "fss": {"0x%x" % (i + 1): f for i, f in enumerate(fss)}}
    hdr.update(hdr_extra)
    data = (record(0, pack_nvlist(hdr), hdrtype=2, toname="a/er@s0") + record(5)
            + record(0, b"", hdrtype=1, features=1 << 24, ctime=2 ** 63 - 1, toname="a/er@s0") + bytes(3000))
    _put(site, "odd.age", data)
    if match is None:  # a nameless entry is ignored; the rest is a whole group (created time unknown)
        res = _import(site, [Tree(()), Tree(())])
        assert res["changed"] and res["packages"][0]["created"] == ""
        return
    with pytest.raises(Refusal, match=match):
        _import(site, [Tree(())])


def test_a_file_for_another_recipient_is_left_alone_with_a_warning(site, tmp_path):
    out = subprocess.run(["age-keygen", "-o", str(tmp_path / "other")], capture_output=True, text=True, check=True)
    rcpt = [w for w in out.stderr.split() if w.startswith("age1")][0]
    (site["tmp"] / "carrier" / "escrow.age").write_bytes(age.encrypt(b"a key escrow", [rcpt]))
    _put(site, "r0.age", compound("a/er", "s0", [fss_entry("a/er", {"s0": 100}, True)]))
    res = _import(site, [Tree(()), Tree(())])
    assert res["changed"] and "escrow.age is not addressed" in str(res["warnings"])
