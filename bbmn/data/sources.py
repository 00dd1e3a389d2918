"""Parse-time checks of the registered files a run needs, before any job starts.

``bbmn fetch`` verifies every file when it copies it, but only once the workflow runs, possibly
hours in, after pre-training. :func:`check_sources` finds the same problems while the workflow is
parsed and names the registry key: a file that no mirror has while downloads are off (or the entry
has no url), a mirror copy whose sha256 is not the registry's, and a local ``path`` that is missing
or unreadable. A local file's sha256 is computed here instead of written in the config; the fetch
rule carries it in its params, so an edited file reruns fetch, clean and everything downstream.

Hashing the 1.58M-line MOSES file takes about a second; clusters parse the workflow again in every
job. :class:`DigestCache` therefore remembers each file's digest under its (size, mtime, inode)
and hashes again only when one of them changes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bbmn.config import prepared_datasets, reads_corpus
from bbmn.data.fetch import mirror_dirs
from bbmn.errors import BbmnError
from bbmn.io import sha256_file, write_json

log = logging.getLogger(__name__)


class DigestCache:
    """sha256 of files, remembered in a JSON file under each file's (size, mtime_ns, inode).

    A file is hashed again when any of the three changes; an unreadable or corrupt cache file is
    ignored (and rewritten), never trusted.
    """

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict] = {}
        self.changed = False
        if self.path is not None and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    def sha256(self, file: str | Path) -> str:
        file = Path(file).resolve()
        stat = file.stat()
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entry = self.entries.get(str(file))
        if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
        digest = sha256_file(file)
        self.entries[str(file)] = {"key": key, "sha256": digest}
        self.changed = True
        return digest

    def save(self) -> None:
        """Write the cache (atomically) if anything was hashed; a read-only place is not an error."""
        if self.path is None or not self.changed:
            return
        try:
            write_json(self.path, self.entries)
        except OSError as exc:
            log.debug("digest cache %s not written: %s", self.path, exc)


@dataclass(frozen=True)
class Source:
    """Where a registered file comes from and the sha256 it must have.

    Attributes:
        where: the mirror copy, the local ``path``, ``fetched`` (already in results) or ``download``.
        sha256: the registry's, or the local file's as hashed now.
    """

    where: str
    sha256: str


def needed_sources(config: dict) -> Iterator[tuple[str, str, dict]]:
    """``(registry section, name, entry)`` of every file the run reads: the datasets it prepares
    (``run.prepare``) and the run's corpus when it reads one."""
    for name in prepared_datasets(config):
        yield "datasets", name, config["datasets"][name]
    if reads_corpus(config):
        yield "corpora", config["run"]["corpus"], config["corpora"][config["run"]["corpus"]]


def check_sources(config: dict, digest_cache: str | Path | None = None) -> dict[str, Source]:
    """Check, for every file the run needs, that it can be had and is the registered file.

    Returns:
        ``{name: Source}`` (see :func:`check_source`).

    Raises:
        BbmnError: one line naming the registry key and the file.
    """
    cache = DigestCache(digest_cache)
    try:
        return {name: check_source(config, section, name, cache)
                for section, name, _ in needed_sources(config)}
    finally:
        cache.save()


def check_source(config: dict, section: str, name: str, cache: DigestCache) -> Source:
    """Where registry entry ``section.name`` comes from, checked.

    A local ``path`` (relative to the working directory) must be a readable file; its sha256 is
    computed (``cache`` keeps it while the file is unchanged). Otherwise a file already fetched
    into ``<results>/data/raw/`` is left to the fetch rule (it was checked when it was copied); the
    first mirror that has the file (the order ``bbmn fetch`` tries them in) must hold a copy with
    the registry's sha256; with no mirror copy, downloads must be on and the entry must have a url.

    Raises:
        BbmnError: one line naming the registry key and the file.
    """
    entry = config[section][name]
    key = f"{section}.{name}"
    if entry.get("path"):
        return _local_source(key, entry, cache)
    mirrors = mirror_dirs(config["data"]["mirrors"])
    fetched = Path(config["results"]) / "data" / "raw" / name / Path(entry["file"]).name
    copy = next((m / entry["file"] for m in mirrors if (m / entry["file"]).is_file()), None)
    if copy is not None:
        digest = cache.sha256(copy)
        if digest != entry["sha256"].lower():
            raise BbmnError(f"config key {key}.sha256: the mirror copy {copy} has sha256 "
                            f"{digest}, the registry says {entry['sha256']}; fix the entry "
                            f"or replace the file")
        return Source(str(copy), digest)
    if fetched.is_file():
        return Source("fetched", entry["sha256"].lower())
    if not config["data"]["download"] or not entry.get("url"):
        why = ("downloads are off (data.download: false)" if entry.get("url")
               else "the entry has no url to download it from")
        where = ", ".join(str(m) for m in mirrors) or "(no mirrors configured)"
        raise BbmnError(f"config key {key}.file: {entry['file']!r} is in none of the "
                        f"mirrors ({where}) and {why}")
    return Source("download", entry["sha256"].lower())


def _local_source(key: str, entry: dict, cache: DigestCache) -> Source:
    """A local ``path``: a readable file, hashed; an optional sha256 in the entry pins it."""
    path = Path(entry["path"])
    where = "" if path.is_absolute() else f" (relative to the working directory {os.getcwd()})"
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise BbmnError(f"config key {key}.path: {path} {what}{where}")
    if not os.access(path, os.R_OK):
        raise BbmnError(f"config key {key}.path: {path} cannot be read (permission denied)")
    try:
        digest = cache.sha256(path)
    except OSError as exc:
        raise BbmnError(f"config key {key}.path: {path} cannot be read ({exc.strerror})") from None
    if entry.get("sha256") and digest != entry["sha256"].lower():
        raise BbmnError(f"config key {key}.sha256: {path} has sha256 {digest}, the entry says "
                        f"{entry['sha256']}; fix the entry or drop its sha256")
    return Source(str(path), digest)


def default_digest_cache() -> Path:
    """Where the workflow keeps the digests: beside snakemake's own metadata in the working dir."""
    return Path(os.getcwd()) / ".snakemake" / "bbmn" / "sha256.json"
