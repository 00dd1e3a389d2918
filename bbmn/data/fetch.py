"""The ``fetch`` step: put a registered raw data file in place, with its sha256 verified.

A registry entry's local ``path`` is copied as it is (:func:`copy_local`). For a ``file``, a local
mirror (a directory laid out like the registry's ``file`` paths) is used when it has the file;
otherwise the file is downloaded from its public address. Files inside archives (MOSES is
published inside a PyPI wheel) are extracted by member name. Nothing is published under the final
name unless its checksum matches the registry (or, for a local path, the sha256 the workflow
computed when it started).

Hand-written rather than ``pooch.retrieve``: pooch checks the hash of the file it downloads, while
the registry records the extracted member's (the MOSES wheel), and it has no mirror-first lookup;
the download itself is a plain ``urllib`` read with a tqdm bar, published atomically.
"""

from __future__ import annotations

import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from bbmn.errors import BbmnError
from bbmn.io import atomic_path, sha256_file

log = logging.getLogger(__name__)


def mirror_dirs(configured: Sequence[str] = ()) -> list[Path]:
    """Mirror directories: ``$BBMN_DATA_MIRROR`` (``:``-separated) first, then the configured ones."""
    env = [p for p in os.environ.get("BBMN_DATA_MIRROR", "").split(os.pathsep) if p]
    return [Path(p) for p in [*env, *configured]]


def _check(path: Path, sha256: str, what: str) -> None:
    got = sha256_file(path)
    if got != sha256.lower():
        raise BbmnError(f"checksum mismatch for {what}: sha256 is {got}, the registry says {sha256}")


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as fh:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {Path(url).name}",
                      disable=None) as bar:
                while block := response.read(1 << 20):
                    fh.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise BbmnError(f"download of {url} failed: {exc}") from None


def copy_local(dest: str | Path, source: str | Path, sha256: str) -> str:
    """Make ``dest`` a copy of a registry entry's local ``path``, with the sha256 the workflow
    computed when it started: a file edited since then fails here instead of mixing versions."""
    source = Path(source)
    if not source.is_file():
        raise BbmnError(f"{source}: not found")
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
        got = sha256_file(tmp)
        if got != sha256.lower():
            raise BbmnError(f"{source} changed after the workflow started (sha256 {got}, expected "
                            f"{sha256}); run the workflow again")
    log.info("fetch: copied local file %s", source)
    return f"local {source}"


def fetch(dest: str | Path, sha256: str, relpath: str | None = None,
          mirrors: Sequence[str | Path] = (), url: str | None = None, member: str | None = None,
          download: bool = True) -> str:
    """Make ``dest`` a verified copy of a registered file; return where it came from.

    Args:
        dest: where the file goes.
        sha256: the file's registered sha256 (of the extracted member, for archives).
        relpath: the file's path inside a mirror directory.
        mirrors: mirror directories to try, in order.
        url: public address (of the archive, when ``member`` is given).
        member: the file's name inside the zip archive at ``url``.
        download: allow downloading when no mirror has the file.
    """
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256.lower():
        return "already present"
    for mirror in mirrors:
        candidate = Path(mirror) / relpath if relpath else None
        if candidate is not None and candidate.is_file():
            with atomic_path(dest) as tmp:
                shutil.copyfile(candidate, tmp)
                _check(tmp, sha256, str(candidate))
            log.info("fetch: copied %s from mirror %s", relpath, mirror)
            return f"mirror {mirror}"
    if not url:
        raise BbmnError(f"{relpath or dest.name} is in none of the mirrors {[str(m) for m in mirrors]} "
                        "and the registry gives no url")
    if not download:
        raise BbmnError(f"{relpath or dest.name} is in none of the mirrors {[str(m) for m in mirrors]} "
                        "and downloads are disabled (data.download: false)")
    with atomic_path(dest) as tmp:
        if member:
            archive = tmp.with_name(tmp.name + ".archive")
            try:
                _download(url, archive)
                try:
                    with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                except (zipfile.BadZipFile, KeyError) as exc:
                    raise BbmnError(f"cannot extract {member} from {url}: {exc}") from None
            finally:
                archive.unlink(missing_ok=True)
        else:
            _download(url, tmp)
        _check(tmp, sha256, url)
    log.info("fetch: downloaded %s", url)
    return f"download {url}"
