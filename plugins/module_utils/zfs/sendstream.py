# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a ``zfs send`` stream says about itself, read from its first records.

A stream starts with a ``DRR_BEGIN`` record (312 bytes: type, payload length, then magic,
version and feature flags, creation time, object-set type, flags, to/from guid and the
snapshot's name). A ``zfs send -R`` (compound) stream's BEGIN carries an XDR-packed nvlist:
``tosnap``, ``fromsnap`` (incremental) and ``fss``, one entry per filesystem with its ``name``,
``snaps`` (short name -> guid) and ``is_encroot``. Then ``DRR_END``, then one substream per
snapshot, each starting with its own BEGIN, whose payload holds ``crypt_keydata`` when the
dataset is encrypted and sent raw.

This module reads those facts (no ZFS needed) so that an unsigned stream can be planned like a
signed package: which group it is, full or incremental from which base guid, which snapshot
guids it brings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, Optional

MAGIC = 0x2F5BACBAC
RECORD = 312
DRR_BEGIN, DRR_END = 0, 5
SUBSTREAM, COMPOUND = 1, 2
FEATURE_RAW = 1 << 24
PAYLOAD_LIMIT = 64 << 20

# nvpair data types (sys/nvpair.h)
_BOOLEAN, _BOOLEAN_VALUE, _UINT64, _INT64, _HRTIME, _STRING, _NVLIST = 1, 21, 8, 7, 18, 9, 19
_INT32ISH = {3, 4, 5, 6, 22, 23, 2}  # int16/uint16/int32/uint32/int8/uint8/byte: one XDR int


class StreamFormatError(ValueError):
    """Not a zfs send stream, or one this reader does not understand."""


@dataclass
class Begin:
    """One DRR_BEGIN record."""
    hdrtype: int
    features: int
    creation_time: int
    toguid: int
    fromguid: int
    toname: str
    payload: Dict = field(default_factory=dict)

    @property
    def compound(self):
        return self.hdrtype == COMPOUND

    @property
    def raw(self):
        return bool(self.features & FEATURE_RAW)


PAIR_BUDGET = 1 << 20  # nvpairs in one header: far more than any real stream's


def _xdr_string(buf, pos, end):
    (n,) = struct.unpack_from(">I", buf, pos)
    pos += 4
    if pos + n > end:
        raise StreamFormatError("an nvlist string runs past its pair")
    return buf[pos:pos + n].decode("utf-8", "replace"), pos + ((n + 3) & ~3)


def _nvlist(buf, pos, end, budget, depth=0):
    """(dict, position after it) of an XDR-encoded nvlist body (version, flags, pairs) that
    must lie within ``buf[pos:end]``; each nested list within its own pair, so every byte is
    read once (``budget``: pairs left to read)."""
    if depth > 16:
        raise StreamFormatError("nvlist nested too deeply")
    pos += 8  # version, nvflag
    out = {}
    while True:
        if pos + 8 > end:
            raise StreamFormatError("an nvlist runs past its end")
        esize, dsize = struct.unpack_from(">ii", buf, pos)
        if esize == 0 and dsize == 0:
            return out, pos + 8
        budget[0] -= 1
        if budget[0] < 0:
            raise StreamFormatError("the stream header has too many nvlist pairs")
        if esize < 16 or pos + esize > end:
            raise StreamFormatError("a damaged nvlist pair (size %d)" % esize)
        pair_end = pos + esize
        name, p = _xdr_string(buf, pos + 8, pair_end)
        if p + 8 > pair_end:
            raise StreamFormatError("a damaged nvlist pair (%s)" % name)
        dtype, _nelem = struct.unpack_from(">ii", buf, p)
        p += 8
        if dtype == _BOOLEAN:
            out[name] = True
        elif dtype == _STRING:
            out[name] = _xdr_string(buf, p, pair_end)[0]
        elif dtype in (_UINT64, _INT64, _HRTIME) and p + 8 <= pair_end:
            out[name] = struct.unpack_from(">Q" if dtype == _UINT64 else ">q", buf, p)[0]
        elif (dtype == _BOOLEAN_VALUE or dtype in _INT32ISH) and p + 4 <= pair_end:
            out[name] = struct.unpack_from(">i", buf, p)[0]
        elif dtype == _NVLIST:
            out[name], after = _nvlist(buf, p, pair_end, budget, depth + 1)
            if after != pair_end:
                raise StreamFormatError("a nested nvlist does not fill its pair (%s)" % name)
        # other types (arrays, doubles) are skipped: nothing here needs them
        pos = pair_end


def unpack_nvlist(buf):
    """A packed nvlist (``nvlist_pack(..., NV_ENCODE_XDR)``) as a dict."""
    if len(buf) < 12 or buf[0] != 1:
        raise StreamFormatError("the stream header's nvlist is not XDR-encoded")
    data = bytes(buf)
    try:
        return _nvlist(data, 4, len(data), [PAIR_BUDGET])[0]
    except struct.error:
        raise StreamFormatError("the stream header's nvlist is cut short") from None


def read_record(buf, pos):
    """(drr_type, payload length, the record's bytes, byte order) at ``pos``."""
    if len(buf) < pos + RECORD:
        raise StreamFormatError("the stream ends inside its first records")
    rec = buf[pos:pos + RECORD]
    for order in ("<", ">"):
        drr_type, plen = struct.unpack_from(order + "II", rec, 0)
        if drr_type in (DRR_BEGIN, DRR_END) and (drr_type != DRR_BEGIN
                                                 or struct.unpack_from(order + "Q", rec, 8)[0] == MAGIC):
            return drr_type, plen, rec, order
    raise StreamFormatError("not a zfs send stream (no BEGIN record with the send magic)")


def parse_begin(buf, pos=0, payload=True):
    """(Begin, position after its payload) for the BEGIN record at ``pos``; ``payload``: unpack
    its XDR nvlist (a compound stream's header; substreams carry native-encoded ones)."""
    drr_type, plen, rec, order = read_record(buf, pos)
    if drr_type != DRR_BEGIN:
        raise StreamFormatError("expected a BEGIN record at byte %d" % pos)
    _magic, vinfo, ctime, _ostype, _flags, toguid, fromguid = struct.unpack_from(order + "QQQIIQQ", rec, 8)
    toname = rec[56:56 + 256].split(b"\0", 1)[0].decode("utf-8", "replace")
    if plen > PAYLOAD_LIMIT:
        raise StreamFormatError("the stream's header payload is %d bytes (more than %d)" % (plen, PAYLOAD_LIMIT))
    body = pos + RECORD
    if payload and len(buf) < body + plen:
        raise StreamFormatError("the stream ends inside its header")
    nvl = unpack_nvlist(buf[body:body + plen]) if plen and payload else {}
    return Begin(hdrtype=vinfo & 0x3, features=(vinfo >> 2) & 0x3FFFFFFF, creation_time=ctime,
                 toguid=toguid, fromguid=fromguid, toname=toname, payload=nvl), body + plen


@dataclass
class Header:
    """What a stream's first records say: the outer BEGIN and, for a compound stream, the
    first substream's BEGIN (the top dataset's: is it encrypted, raw)."""
    begin: Begin
    first: Optional[Begin] = None

    @property
    def compound(self):
        return self.begin.compound

    @property
    def dataset(self):
        return self.begin.toname.split("@", 1)[0]

    @property
    def tosnap(self):
        return self.begin.payload.get("tosnap") if self.compound else self.begin.toname.split("@", 1)[-1]

    @property
    def fromsnap(self):
        return self.begin.payload.get("fromsnap")

    def filesystems(self):
        """Each filesystem's entry of a compound stream (those with a name), the top dataset
        first, then by name."""
        fss = self.begin.payload.get("fss")
        fss = [v for v in (fss.values() if isinstance(fss, dict) else ())
               if isinstance(v, dict) and isinstance(v.get("name"), str)]
        return sorted(fss, key=lambda fs: (fs.get("name") != self.dataset, fs.get("name", "")))

    def top(self):
        for fs in self.filesystems():
            if fs.get("name") == self.dataset:
                return fs
        return None

    @property
    def top_encrypted(self):
        """The top dataset is encrypted: an encryption root, or its first substream is raw (ZFS
        sets the RAW feature only for encrypted datasets)."""
        top = self.top() or {}
        return bool(top.get("is_encroot")) or bool(self.first and self.first.raw)


def read_header(buf):
    """The :class:`Header` of a stream whose first bytes are ``buf`` (a few KiB to MiB: the
    compound header's nvlist grows with datasets and snapshots)."""
    begin, pos = parse_begin(buf, 0, payload=False)
    if not begin.compound:  # a single dataset's stream: its payload is the kernel's, native-encoded
        return Header(begin)
    begin, pos = parse_begin(buf, 0)
    drr_type, plen, _rec, _order = read_record(buf, pos)
    if drr_type != DRR_END:
        raise StreamFormatError("a compound stream whose header is not closed by an END record")
    pos += RECORD + plen
    first = None
    if len(buf) >= pos + RECORD and read_record(buf, pos)[0] == DRR_BEGIN:
        first = parse_begin(buf, pos, payload=False)[0]
    return Header(begin, first)


def needed(buf):
    """How many leading bytes :func:`read_header` needs, as far as ``buf`` tells (grows as
    records are found): BEGIN and its payload, END, the first substream's BEGIN record."""
    try:
        _t, plen, _r, _o = read_record(buf, 0)
    except StreamFormatError:
        return RECORD
    if plen > PAYLOAD_LIMIT:
        raise StreamFormatError("the stream's header payload is %d bytes (more than %d)" % (plen, PAYLOAD_LIMIT))
    return RECORD + plen + RECORD + RECORD
