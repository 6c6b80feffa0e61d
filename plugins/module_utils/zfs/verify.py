# -*- coding: utf-8 -*-
# Copyright (c) 2026, blindvault.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zfs_verify's backend: prove that a (replica) dataset or tree can be decrypted.

``zpool scrub`` checks block checksums, not encryption MACs, and key-less checks cannot see
hex->hex key changes (hazards.py): only loading the key and reading proves a replica
(safety rule R11). So:

1. read the tree with one ``zfs list`` (one more for encryption roots above it, one for the
   source of ``compare_files_with``), choose one snapshot per dataset and plan the key loads;
   every refusal happens here, before anything is touched;
2. load the keys that are not loaded (stdin or ``file://``, never argv);
3. read every snapshot: ``stream`` hashes a non-raw ``zfs send`` (ZFS decrypts and checks the
   MAC of every block), ``files`` mounts the snapshot read-only in a private directory and
   hashes every regular file, optionally against the source's same snapshot;
4. unmount what was mounted and unload the keys that were loaded, also after a failure.

Reading never changes a dataset, and the temporary key loads and mounts are undone, so the
same happens in check mode. A dataset that cannot be read is a result (``status: failed``
with the tool's own words), not an exception.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time

from ansible_collections.blindvault.storage.plugins.module_utils.plan import Refusal
from ansible_collections.blindvault.storage.plugins.module_utils.runner import CommandError
from ansible_collections.blindvault.storage.plugins.module_utils.zfs import hazards as hz
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.keys import key_source
from ansible_collections.blindvault.storage.plugins.module_utils.zfs.state import Tree, read_tree

MODES = ("stream", "files")
MAX_MISMATCHES = 100  # listed per dataset; the error gives the full count
CHUNK = 1 << 20

# What ZFS 2.1.11 says when a member's key cannot be unwrapped by its loaded root's key
# (stream: zfs send; files: mount). keystatus reads "available" all the same.
UNWRAP_WORDS = ("dataset key must be loaded", "Permission denied")
UNWRAP_HINT = ("the key of its encryption root %s is loaded, yet this dataset cannot be decrypted "
               "with it: its own key was wrapped by another key, as when a key change reached only "
               "part of the group; replicate the whole group again, root first (safety rule R1)")
WRONG_KEY_HINT = ("the key given (or found at the keylocation) is not the one this encryption root "
                  "is wrapped with on this pool")


def _check_key_pair(where, item):
    if item.get("key") is not None and item.get("key_file"):
        raise Refusal("%s: give key or key_file, not both" % where)
    if item.get("key") == "":
        raise Refusal("%s: key is empty" % where)
    if item.get("key_file") and not os.path.isfile(item["key_file"]):
        raise Refusal("%s: key_file %s does not exist or is not a file" % (where, item["key_file"]))


def validate(params):
    """Checked and normalised options (a dict); Refusal on bad input."""
    name = (params.get("name") or "").strip()
    if not name:
        raise Refusal("name: a dataset or tree to verify is required")
    if "@" in name or "#" in name:
        raise Refusal("name %s: give a dataset, and the snapshot's short name in snapshot" % name)
    mode = params.get("mode") or "stream"
    if mode not in MODES:
        raise Refusal("mode must be one of %s, not %s" % (", ".join(MODES), mode))
    snapshot = params.get("snapshot")
    if snapshot is not None:
        snapshot = snapshot[1:] if snapshot.startswith("@") else snapshot
        if not snapshot or any(c in snapshot for c in "@#/ "):
            raise Refusal("snapshot %r: give a snapshot's short name (the part after @)"
                          % params["snapshot"])
    compare = params.get("compare_files_with")
    if compare is not None:
        compare = compare.strip()
        if mode != "files":
            raise Refusal("compare_files_with compares files: it needs mode files")
        if not compare or "@" in compare or "#" in compare:
            raise Refusal("compare_files_with %r: give the source dataset (without @snapshot)"
                          % params["compare_files_with"])
        if compare == name:
            raise Refusal("compare_files_with: %s is the dataset being verified" % compare)
    _check_key_pair(name, params)
    keys = {}
    for index, item in enumerate(params.get("keys") or []):
        where = "keys[%d]" % index
        root = (item.get("encryptionroot") or "").strip()
        if not root:
            raise Refusal("%s: encryptionroot is required" % where)
        if root in keys:
            raise Refusal("%s: encryption root %s is named twice" % (where, root))
        _check_key_pair(where, item)
        if item.get("key") is None and not item.get("key_file"):
            raise Refusal("%s: give key or key_file for %s" % (where, root))
        keys[root] = key_source(item)
    return {
        "name": name, "mode": mode, "snapshot": snapshot, "compare_files_with": compare,
        "recursive": params.get("recursive", True) is not False, "keys": keys,
        "default_key": key_source(params),
        "fail_on_error": params.get("fail_on_error", True) is not False,
    }


def _result(d, snapshot=None, status=None, error=None):
    return {"name": d.name, "type": d.type, "snapshot": snapshot,
            "encryptionroot": d.encryptionroot if d.encrypted else None,
            "status": status, "error": error, "hint": None, "bytes": None, "sha256": None,
            "seconds": None, "files": None, "mismatches": None, "compared_with": None}


def select(tree, opts):
    """One result per dataset under ``name`` (status None: to be read), in ``zfs list`` order.

    Each dataset's snapshot is ``opts['snapshot']`` or its newest one (by createtxg). A
    dataset without snapshots is skipped; one that lacks the named snapshot fails (the replica
    is behind); volumes are skipped in files mode. Refusal when nothing is left to read.
    """
    name, wanted = opts["name"], opts["snapshot"]
    top = tree.get(name)
    if top is None or top.type not in ("filesystem", "volume"):
        raise Refusal("%s does not exist" % name)
    members = [top] + (tree.children(name) if opts["recursive"] else [])
    results = []
    for d in members:
        snaps = [s.name.split("@", 1)[1] for s in tree.snapshots_of(d.name)]
        if not snaps:
            results.append(_result(d, None, "skipped", "no snapshots to verify"))
        elif wanted is not None and wanted not in snaps:
            results.append(_result(d, wanted, "failed", "%s has no snapshot @%s (its newest is @%s)"
                                   % (d.name, wanted, snaps[-1])))
        elif opts["mode"] == "files" and d.type == "volume":
            results.append(_result(d, wanted or snaps[-1], "skipped",
                                   "a volume has no files; mode stream verifies it"))
        else:
            results.append(_result(d, wanted or snaps[-1]))
    if not any(r["status"] is None for r in results):
        why = sorted({r["error"] for r in results})
        raise Refusal("nothing to verify under %s: %s" % (name, "; ".join(why)))
    return results


def map_sources(results, source, opts):
    """Name the source snapshot each pending dataset is compared with (same relative path)."""
    name, top = opts["name"], opts["compare_files_with"]
    for r in results:
        if r["status"] is None:
            r["compared_with"] = "%s%s@%s" % (top, r["name"][len(name):], r["snapshot"])
    return results


def roots_needed(results, trees):
    """Encryption roots whose keys reading the pending datasets (and their sources) needs."""
    needed = set()
    for r in results:
        if r["status"] is not None:
            continue
        if r["encryptionroot"]:
            needed.add(r["encryptionroot"])
        src = r["compared_with"] and trees.get(r["compared_with"].split("@", 1)[0])
        if src and src.encrypted and src.encryptionroot:
            needed.add(src.encryptionroot)
    return needed


def plan_keys(known, needed, opts):
    """The key loads to do, as [{root, location, secret}]; Refusal when one cannot be done."""
    all_roots = {d.encryptionroot for d in known.datasets if d.encrypted and d.encryptionroot}
    for root in opts["keys"]:
        if root not in all_roots:
            raise Refusal("keys: %s is not an encryption root of %s%s" % (
                root, opts["name"], " or of " + opts["compare_files_with"]
                if opts["compare_files_with"] else ""))
    loads = []
    for root in sorted(needed):
        d = known.get(root)
        if d is None:
            raise Refusal("encryption root %s could not be read" % root)
        if d["keystatus"] == "available":
            continue
        location, secret = opts["keys"].get(root) or opts["default_key"]
        if location is None and (d["keylocation"] or "none") in ("none", "prompt"):
            raise Refusal("the key of %s is not loaded, no key was given and its keylocation is %s: "
                          "give key, key_file or keys" % (root, d["keylocation"] or "none"))
        if secret is not None and d["keyformat"] == "raw":
            raise Refusal("%s has a raw key: give it as a key_file" % root)
        loads.append({"root": root, "location": location, "secret": secret})
    return loads


def hash_tree(top):
    """({relative path: sha256} of every regular file under top, bytes read, [read errors]).

    Symlinks are not followed; other special files are not hashed.
    """
    files, errors, total = {}, [], 0

    def walk_error(exc):
        errors.append("%s: %s" % (os.path.relpath(exc.filename or top, top), exc.strerror or exc))

    for dirpath, _dirs, names in os.walk(top, onerror=walk_error):
        for fname in names:
            path = os.path.join(dirpath, fname)
            rel = os.path.relpath(path, top)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(CHUNK), b""):
                        digest.update(chunk)
                        total += len(chunk)
            except OSError as exc:
                errors.append("%s: %s" % (_shown(rel), exc.strerror or exc))
                continue
            files[rel] = digest.hexdigest()
    return files, total, errors


def manifest_sha256(files):
    """sha256 of the ``sha256sum``-style listing of files (sorted by path): one value per tree."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(("%s  %s\n" % (files[rel], rel)).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def compare_files(replica, source):
    """Mismatches [{path, problem}] between two {path: sha256} maps, sorted by path.

    ``missing``: in the source only; ``extra``: in the replica only; ``different``: both, but
    their contents differ.
    """
    found = []
    for rel in sorted(set(replica) | set(source)):
        if rel not in replica:
            found.append({"path": _shown(rel), "problem": "missing"})
        elif rel not in source:
            found.append({"path": _shown(rel), "problem": "extra"})
        elif replica[rel] != source[rel]:
            found.append({"path": _shown(rel), "problem": "different"})
    return found


def _shown(rel):
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _words(exc):
    """The tool's own words from a CommandError (without the pipeline's "(in: ...)")."""
    said = (exc.stderr or "").strip() or (exc.stdout or "").strip() or str(exc)
    cut = said.rfind(" (in: ")
    return said[:cut].strip() if cut > 0 and said.endswith(")") else said


class _Session:
    """Key loads and mounts of one run, undone by ``restore()`` whatever happened."""

    def __init__(self, runner):
        self.runner = runner
        self.loaded = []
        self.mounts = []
        self.workdir = None
        self.count = 0
        self.restore_errors = []

    def load(self, load):
        argv = ["zfs", "load-key"]
        if load["location"]:
            argv += ["-L", load["location"]]
        # A temporary load, undone by restore(): it runs in check mode too (changes=False).
        self.runner.run(argv + [load["root"]], secret=load["secret"])
        self.loaded.append(load["root"])

    def read_files(self, snap):
        """Mount snap read-only in a private directory, hash its files, unmount."""
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="blindvault-verify-")  # 0700
        self.count += 1
        mnt = os.path.join(self.workdir, str(self.count))
        os.mkdir(mnt, 0o700)
        try:
            # zfsutil is refused for snapshots ("cannot be mounted using 'zfs mount'"): plain ro.
            self.runner.run(["mount", "-t", "zfs", "-o", "ro", snap, mnt])
        except CommandError:
            os.rmdir(mnt)
            raise
        self.mounts.append(mnt)
        try:
            return hash_tree(mnt)
        finally:
            self.unmount(mnt)

    def unmount(self, mnt):
        try:
            self.runner.run(["umount", mnt])
        except CommandError as exc:
            self.restore_errors.append("%s stays mounted: %s" % (mnt, _words(exc)))
            return
        self.mounts.remove(mnt)
        os.rmdir(mnt)

    def restore(self):
        for mnt in list(reversed(self.mounts)):
            self.unmount(mnt)
        if self.workdir and not self.mounts:
            try:
                os.rmdir(self.workdir)  # empty: each mount point went with its unmount
            except OSError as exc:
                self.restore_errors.append("%s: %s" % (self.workdir, exc.strerror or exc))
        for root in reversed(self.loaded):
            try:
                self.runner.run(["zfs", "unload-key", root])
            except CommandError as exc:
                self.restore_errors.append("the key of %s stays loaded: %s" % (root, _words(exc)))


def _read_stream(runner, r):
    digest = hashlib.sha256()
    res = runner.pipeline([["zfs", "send", "%s@%s" % (r["name"], r["snapshot"])]],
                          sink=digest.update)
    r.update(bytes=res.out_bytes, sha256=digest.hexdigest())


def _read_files(session, r, source_ok):
    files, total, errors = session.read_files("%s@%s" % (r["name"], r["snapshot"]))
    r.update(bytes=total, files=len(files), sha256=manifest_sha256(files))
    problems = []
    if errors:
        problems.append("%d file(s) could not be read: %s" % (len(errors), "; ".join(errors[:5])))
    if r["compared_with"]:
        problems += _compare(session, r, files, source_ok)
    if problems:
        r.update(status="failed", error="; ".join(problems))


def _compare(session, r, files, source_ok):
    """Read the source snapshot and compare; returns the problems found."""
    if source_ok is not True:
        return [source_ok]
    try:
        theirs, _total, errors = session.read_files(r["compared_with"])
    except CommandError as exc:
        return ["source %s: %s" % (r["compared_with"], _words(exc))]
    problems = []
    if errors:
        problems.append("source %s: %d file(s) could not be read: %s" % (
            r["compared_with"], len(errors), "; ".join(errors[:5])))
    mismatches = compare_files(files, theirs)
    r["mismatches"] = mismatches[:MAX_MISMATCHES]
    if mismatches:
        problems.append("%d file(s) differ from %s%s" % (
            len(mismatches), r["compared_with"], " (the first %d are listed)" % MAX_MISMATCHES
            if len(mismatches) > MAX_MISMATCHES else ""))
    return problems


def _source_state(r, known, load_errors):
    """True if r's source snapshot can be read, else why not."""
    ds_name = r["compared_with"].split("@", 1)[0]
    if r["compared_with"] not in known:
        return "no source snapshot %s to compare with" % r["compared_with"]
    src = known.get(ds_name)
    if src.encrypted and src.encryptionroot in load_errors:
        return "source %s: the key of %s could not be loaded: %s" % (
            r["compared_with"], src.encryptionroot, load_errors[src.encryptionroot])
    return True


def _explain(r, loaded_roots):
    """A hint for ZFS's terse words when a member of a loaded root cannot be decrypted."""
    if r["encryptionroot"] in loaded_roots and any(w in (r["error"] or "") for w in UNWRAP_WORDS):
        r["hint"] = UNWRAP_HINT % r["encryptionroot"]


def verify(runner, params):
    """Read state once, refuse or plan, then load keys, read, and restore. Returns the result."""
    opts = validate(params)
    name, compare = opts["name"], opts["compare_files_with"]
    tree = read_tree(runner, [name], recursive=opts["recursive"], with_holds=False)
    results = select(tree, opts)
    entries = list(tree.entries)
    source = None
    if compare:
        source = read_tree(runner, [compare], recursive=opts["recursive"], with_holds=False)
        if compare not in source:
            raise Refusal("compare_files_with: source %s does not exist" % compare)
        map_sources(results, source, opts)
        entries += [e for e in source.entries if e.name not in tree]
    known = Tree(tuple(entries))
    # A dataset inside an encryption root above what was read: read those roots too (one list).
    above = sorted({d.encryptionroot for d in known.datasets
                    if d.encrypted and d.encryptionroot and d.encryptionroot not in known})
    if above:
        extra = read_tree(runner, above, recursive=False, types="filesystem,volume",
                          with_holds=False)
        known = Tree(tuple(entries + list(extra.entries)))
    loads = plan_keys(known, roots_needed(results, known), opts)
    hazards = hz.tree_hazards(Tree(tuple(e for e in known.entries
                                         if source is None or e.name not in source)))
    if compare:
        hazards += hz.compare_hazards(source, compare, tree, name)

    available = {d.name for d in known.datasets if d["keystatus"] == "available"}
    session = _Session(runner)
    load_errors = {}
    try:
        for load in loads:
            try:
                session.load(load)
            except CommandError as exc:
                load_errors[load["root"]] = _words(exc)
        for r in results:
            if r["status"] is not None:
                continue
            start = time.monotonic()
            root = r["encryptionroot"]
            if root in load_errors:
                r.update(status="failed", error="the key of %s could not be loaded: %s"
                         % (root, load_errors[root]))
                if "Incorrect key" in load_errors[root]:
                    r["hint"] = WRONG_KEY_HINT
                continue
            r["status"] = "ok"
            try:
                if opts["mode"] == "stream":
                    _read_stream(runner, r)
                else:
                    source_ok = _source_state(r, known, load_errors) if compare else True
                    _read_files(session, r, source_ok)
            except CommandError as exc:
                r.update(status="failed", error=_words(exc))
                _explain(r, available | set(session.loaded))
            r["seconds"] = round(time.monotonic() - start, 3)
    finally:
        session.restore()

    failed = [r["name"] for r in results if r["status"] == "failed"]
    return {
        "changed": False,
        "ok": not failed and not session.restore_errors,
        "mode": opts["mode"],
        "datasets": results,
        "failed_datasets": failed,
        "keys_loaded": list(session.loaded),
        "hazards": hazards,
        "restore_errors": session.restore_errors,
    }
