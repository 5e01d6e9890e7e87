"""Acquire the MovieLens files: a folder as is, a local zip, or the official GroupLens download.

Downloads go to a temporary file that is renamed into `<home>/raw` only after the size and SHA-1
checks pass, so a corrupted download is never cached; a cached archive is re-verified before reuse.
Extraction refuses members that would land outside the target (`../`, absolute paths, symlinks),
members larger than declared or than a ceiling (zip bombs), names the file system cannot hold, and
ambiguous archives (a member name twice, or more than one MovieLens folder).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import stat
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from tasks.core.errors import InputError, SourceUnavailable
from tasks.core.settings import Paths

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
SHA1 = "cd4dcac4241c8a4ad7badc7ca635da8a69dddb83"
SIZE: int | None = None          # expected bytes if pinned; the SHA-1 is the authoritative check
MAX_DOWNLOAD_BYTES = 64 << 20    # ceiling for any download, whatever the server claims
MAX_MEMBER_BYTES = 1 << 30       # ceiling for one extracted file (ML-25M's ratings.csv is ~650 MB)
MAX_TOTAL_BYTES = 4 << 30        # ceiling for all extracted files
SOURCE_ENV = "LENSFLOW_SOURCE"
MARKER = "u.data"                # a folder holding this file is a MovieLens 100k-format folder
MAX_NAME_PART_BYTES = 255        # one path component (NAME_MAX on Linux and macOS)
MAX_NAME_BYTES = 1024            # a whole member name
HOW_TO_POINT = (
    "Point lensflow at a local copy instead: `lensflow run --source /path/to/ml-100k` (a folder with "
    "u.data, u.item, u.user, u.genre) or `--source /path/to/ml-100k.zip`, or set "
    f"{SOURCE_ENV}=/path/to/ml-100k; or place ml-100k.zip in {{raw}}."
)


class ChecksumMismatch(InputError):
    """The downloaded or cached archive is not the expected file."""


class DownloadFailed(SourceUnavailable):
    """The download failed on network trouble after its own retries (the one transient acquisition error)."""



def sha1_of(path: Path) -> str:
    """SHA-1 hex digest of a file (streamed by hashlib.file_digest)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def _fetch_once(url: str, tmp: Path, size: int | None, max_bytes: int, progress: bool, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        name = Path(url).name or url
        if length is not None and length > max_bytes:
            raise InputError(name, None, "size-ceiling", f"server announces {length} bytes, ceiling is {max_bytes}")
        if size is not None and length is not None and length != size:
            raise InputError(name, None, "size", f"server announces {length} bytes, expected {size}")
        got = 0
        with open(tmp, "wb") as out, tqdm(total=length or size, unit="B", unit_scale=True, desc=name,
                                          disable=not progress, file=sys.stderr, leave=False) as bar:
            while chunk := resp.read(1 << 16):
                got += len(chunk)
                if got > max_bytes:
                    raise InputError(name, None, "size-ceiling", f"download passed the {max_bytes}-byte ceiling")
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if length is not None and got != length:
            raise InputError(name, None, "size", f"got {got} bytes, server announced {length} (truncated?)")
        if size is not None and got != size:
            raise InputError(name, None, "size", f"got {got} bytes, expected {size}")


def download(url: str, dest: Path, *, sha1: str, size: int | None = None, max_bytes: int = MAX_DOWNLOAD_BYTES,
             retries: int = 2, backoff: float = 1.0, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download url to dest (atomically, only if size and SHA-1 match); network errors retried with back-off."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{uuid.uuid4().hex}")
    try:
        for attempt in range(retries + 1):
            try:
                _fetch_once(url, tmp, size, max_bytes, progress, timeout)
                break
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                if isinstance(e, urllib.error.HTTPError) and e.code < 500 and e.code != 429:
                    raise SourceUnavailable(f"{url}: HTTP {e.code}. " + HOW_TO_POINT.format(raw=dest.parent)) from e
                # no such host (offline, no DNS): trying again in a second will not find it either
                no_host = isinstance(getattr(e, "reason", None), socket.gaierror)
                if attempt == retries or no_host:
                    raise DownloadFailed(
                        f"could not download {url} after {attempt + 1} attempt(s) ({e}). "
                        + HOW_TO_POINT.format(raw=dest.parent)) from e
                time.sleep(backoff * 2 ** attempt)
        got = sha1_of(tmp)
        if got != sha1.lower():
            raise ChecksumMismatch(Path(url).name, None, "sha1",
                                   f"downloaded file has SHA-1 {got}, expected {sha1}; not cached")
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def cached_download(url: str, raw: Path, *, sha1: str, size: int | None = None, **kw) -> Path:
    """The archive under raw/, downloaded only when missing or failing its checksum."""
    dest = Path(raw) / (Path(url).name or "download.zip")
    if dest.is_file():
        if sha1_of(dest) == sha1.lower():
            return dest
        dest.unlink()  # a damaged cache entry is dropped and fetched again
    return download(url, dest, sha1=sha1, size=size, **kw)


def _member_problem(info: zipfile.ZipInfo, max_member_bytes: int) -> tuple[str, str] | None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "zip-symlink", "symbolic link members are refused"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
        return "zip-absolute-path", "absolute or drive paths are refused"
    if ".." in PurePosixPath(name).parts:
        return "zip-path-traversal", "'..' would write outside the target folder"
    encoded = name.encode("utf-8", "surrogateescape")
    longest = max((len(part.encode("utf-8", "surrogateescape")) for part in PurePosixPath(name).parts), default=0)
    if longest > MAX_NAME_PART_BYTES or len(encoded) > MAX_NAME_BYTES or "\0" in name:
        return "zip-member-name", (f"a name part may hold {MAX_NAME_PART_BYTES} bytes and a name "
                                   f"{MAX_NAME_BYTES} (this one: {longest} and {len(encoded)}), no NUL")
    if info.file_size > max_member_bytes:
        return "zip-member-size", f"declares {info.file_size} bytes, ceiling is {max_member_bytes}"
    return None


def safe_extract(zip_path: Path, target: Path, *, max_member_bytes: int = MAX_MEMBER_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES) -> Path:
    """Extract every member of zip_path into target (created atomically); refuses unsafe members."""
    zip_path, target = Path(zip_path), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            seen: dict[tuple, str] = {}
            for info in infos:                             # refuse before writing anything
                problem = _member_problem(info, max_member_bytes)
                if problem:
                    raise InputError(zip_path.name, None, problem[0], problem[1], field=info.filename)
                key = PurePosixPath(info.filename).parts
                if key in seen:                            # which copy would win is up to the extractor
                    raise InputError(zip_path.name, None, "zip-duplicate-member",
                                     f"the archive holds this name twice (also as {seen[key]!r}); "
                                     "which copy is meant is ambiguous", field=info.filename)
                seen[key] = info.filename
            declared = sum(i.file_size for i in infos)
            if declared > max_total_bytes:
                raise InputError(zip_path.name, None, "zip-total-size",
                                 f"members declare {declared} bytes, ceiling is {max_total_bytes}")
            root = tmp.resolve()
            for info in infos:
                out = (tmp / info.filename).resolve()
                if root != out and root not in out.parents:
                    raise InputError(zip_path.name, None, "zip-path-traversal", "lands outside the target",
                                     field=info.filename)
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                limit = min(info.file_size, max_member_bytes)
                written = 0
                try:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    dst = open(out, "wb")
                except OSError as e:               # a name this file system cannot hold is bad input
                    if e.errno not in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL, errno.EEXIST,
                                       errno.ENOTDIR, errno.EISDIR):
                        raise
                    raise InputError(zip_path.name, None, "zip-member-name",
                                     f"cannot be created here ({e.strerror})", field=info.filename) from None
                with dst, zf.open(info) as src:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limit:        # the actual size, not only the declared one
                            raise InputError(zip_path.name, None, "zip-member-size",
                                             f"inflates past its declared {info.file_size} bytes",
                                             field=info.filename)
                        dst.write(chunk)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    except zipfile.BadZipFile as e:
        raise InputError(zip_path.name, None, "zip-format", str(e)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _ambiguous(found: list[str], where: str) -> InputError:
    return InputError(where, None, "ambiguous-source",
                      f"{len(found)} MovieLens folders (holding {MARKER}) found: {', '.join(found)}; "
                      "point --source at one of them")


def find_movielens_folder(root: Path) -> Path:
    """root itself when it holds u.data, else the one folder one or two levels down that does.

    Two or more such folders below root are ambiguous and refused, naming them.
    """
    root = Path(root)
    if (root / MARKER).is_file():
        return root
    found = [p for p in [*sorted(root.glob("*/")), *sorted(root.glob("*/*/"))] if (p / MARKER).is_file()]
    if len(found) > 1:
        raise _ambiguous([str(p.relative_to(root)) + "/" for p in found], str(root))
    if found:
        return found[0]
    raise InputError(str(root), None, "files-present", f"no {MARKER} found in this folder or below it")


def movielens_member_folders(zip_path: Path) -> list[str]:
    """The folders inside a zip that hold a u.data member (read from its directory, nothing extracted)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile as e:
        raise InputError(Path(zip_path).name, None, "zip-format", str(e)) from None
    folders = {str(PurePosixPath(n).parent) for n in names if PurePosixPath(n).name == MARKER}
    return sorted(f if f != "." else "(top level)" for f in folders)


def extract_cached(zip_path: Path, raw: Path) -> Path:
    """Extract a zip once into raw/extracted/<sha1 prefix>/ and return the one MovieLens folder inside."""
    zip_path = Path(zip_path)
    folders = movielens_member_folders(zip_path)
    if len(folders) > 1:                       # refused before anything is written
        raise _ambiguous(folders, zip_path.name)
    target = Path(raw) / "extracted" / sha1_of(zip_path)[:16]
    if not target.is_dir():
        safe_extract(zip_path, target)
    return find_movielens_folder(target)


def check_source(source: str | os.PathLike, paths: Paths) -> Path:
    """The source path if it can be a MovieLens copy (a folder, or a zip); else the error, at once."""
    path = Path(source).expanduser()
    if path.is_dir() or (path.is_file() and zipfile.is_zipfile(path)):
        return path
    if path.is_file():
        raise InputError(path.name, None, "source-kind", "expected a folder with u.data or a .zip archive")
    raise SourceUnavailable(f"source {path} does not exist. " + HOW_TO_POINT.format(raw=paths.raw))


def resolve_source(source: str | os.PathLike | None, paths: Paths, *, url: str = URL, sha1: str = SHA1,
                   size: int | None = SIZE, progress: bool = True, retries: int = 2, backoff: float = 1.0) -> Path:
    """A folder holding u.data etc.: source as a folder, a zip (safely extracted), or None for the download.

    None falls back to $LENSFLOW_SOURCE, then to the cached or freshly downloaded official zip.
    """
    source = source or os.environ.get(SOURCE_ENV) or None
    if source is not None:
        path = check_source(source, paths)
        if path.is_dir():
            return find_movielens_folder(path)
        return extract_cached(path, paths.raw)
    archive = cached_download(url, paths.raw, sha1=sha1, size=size, progress=progress,
                              retries=retries, backoff=backoff)
    return extract_cached(archive, paths.raw)
