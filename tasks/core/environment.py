"""Faults of the environment (a full disk, a server that does not answer) told apart from bugs and bad input.

`check_servers()` reaches the MLflow tracking server and the Prefect API named in the environment before any
step runs: one request each, a few seconds at most. `classify(exc)` recognises an exception that a full disk or a
vanished server caused, however a library wrapped it (DuckDB, torch, SQLite, MLflow's and Prefect's HTTP clients),
and returns DiskFull or ServerUnavailable (exit 6) with one line naming the path or URL, the operation and the
setting to fix. Imports nothing heavy.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tasks.core.errors import DiskFull, ServerUnavailable

MLFLOW_ENV = "MLFLOW_TRACKING_URI"
PREFECT_ENV = "PREFECT_API_URL"
SERVERS = ((MLFLOW_ENV, "MLflow tracking server", "/health"), (PREFECT_ENV, "Prefect API", "/health"))
CHECK_TIMEOUT_S = 4.0

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How the libraries say "disk full" without an OSError: DuckDB, SQLite (MLflow's store), torch's zip writer.
DISK_FULL_TEXT = re.compile(r"no space left on device|database or disk is full|disk quota exceeded|"
                            r"file write failed", re.IGNORECASE)
QUOTED_PATH = re.compile(r"""["']((?:/|[A-Za-z]:\\)[^"'\n]+)["']""")
URL = re.compile(r"https?://[^\s'\"()<>]+")
# Exception types (by name, so nothing is imported) raised when a connection fails or drops.
CONNECTION_ERRORS = frozenset({
    "ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError",
    "ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "ReadError", "WriteError",
    "PoolTimeout", "MaxRetryError", "NewConnectionError", "RemoteDisconnected", "ProtocolError",
    "ReadTimeoutError", "ConnectTimeoutError"})
CONNECTION_TEXT = re.compile(r"connection refused|failed to establish a new connection|max retries exceeded|"
                             r"connection reset|remote end closed|all connection attempts failed", re.IGNORECASE)
PROJECT = Path(__file__).resolve().parents[2]


def _http(value: str | None) -> str | None:
    value = (value or "").strip()
    return value.rstrip("/") if value.lower().startswith(("http://", "https://")) else None


def check_servers(timeout_s: float = CHECK_TIMEOUT_S, only=None) -> None:
    """Raise ServerUnavailable unless every HTTP server named by $MLFLOW_TRACKING_URI and $PREFECT_API_URL answers.

    The server's health endpoint must answer 200 within timeout_s; a refused connection, an unknown host, no
    answer, or another HTTP status (something else listens there) is refused. Unset or local (sqlite://, a path) settings need no server. only: the settings
    to check (default: both).
    """
    for setting, what, health in SERVERS:
        if only is not None and setting not in only:
            continue
        base = _http(os.environ.get(setting))
        if base is None:
            continue
        try:
            with urllib.request.urlopen(base + health, timeout=timeout_s):
                pass
        except urllib.error.HTTPError as e:   # something answers, but not as that server's health endpoint
            why = f"HTTP {e.code} {e.reason} on {health}: not a {what}"
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
            if isinstance(reason, TimeoutError) or "timed out" in why:
                why = f"no answer within {timeout_s:g} s"
        else:
            continue
        unset = "a local store under the data home" if setting == MLFLOW_ENV else "Prefect's temporary local API"
        raise ServerUnavailable(f"{what} {base} does not answer ({' '.join(why.split())}): start it, or fix "
                                f"{setting} (unset, lensflow uses {unset}); nothing was run")


def _chain(exc: BaseException):
    """exc, then its causes, contexts and exception-group members, each once."""
    seen, stack = set(), [exc]
    while stack:
        e = stack.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]


def operation(*excs: BaseException) -> str:
    """The innermost lensflow function on the first of excs' tracebacks that has one:
    'warehouse.rebuild, tasks/stores/warehouse.py:138'."""
    for exc in excs:
        found, tb = None, exc.__traceback__
        while tb is not None:
            path = Path(tb.tb_frame.f_code.co_filename)
            if PROJECT in path.parents and path.parent.name in ("tasks", "flows", "models") \
                    and path.name not in ("environment.py", "cli.py", "guard.py"):
                found = f"{path.stem}.{tb.tb_frame.f_code.co_name}, {path.parent.name}/{path.name}:{tb.tb_lineno}"
            tb = tb.tb_next
        if found:
            return found
    return type(excs[0]).__name__


def _fullest(candidates) -> str | None:
    """The candidate folder whose file system has the least room (where a write without a name failed)."""
    room = []
    for folder in candidates:
        folder = Path(folder)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            room.append((shutil.disk_usage(folder).free, str(folder)))
        except OSError:
            continue
    return min(room)[1] if room else None


def _disk_full(exc: BaseException, paths) -> DiskFull | None:
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            where, why = e.filename, e.strerror or "No space left on device"
        elif DISK_FULL_TEXT.search(str(e)):
            quoted = QUOTED_PATH.search(str(e))
            where, why = quoted[1] if quoted else None, DISK_FULL_TEXT.search(str(e))[0]
        else:
            continue
        if not where:
            folders = [paths.data, paths.home, tempfile.gettempdir()] if paths is not None else [tempfile.gettempdir()]
            where = f"the file system of {_fullest(folders)}"
        return DiskFull(f"disk full: {why} writing {where} (in {operation(e, exc)}); "
                        f"the live publication, the lake and the registry are as they were: free space there "
                        f"and run again")
    return None


def _server_gone(exc: BaseException) -> ServerUnavailable | None:
    for e in _chain(exc):
        text = str(e)
        if type(e).__name__ not in CONNECTION_ERRORS and not CONNECTION_TEXT.search(text):
            continue
        urls = URL.findall(text)
        request = getattr(e, "_request", None) if type(e).__module__.startswith("httpx") else None
        if request is not None:
            urls.insert(0, str(request.url))
        for url in urls:
            netloc = urlsplit(url).netloc
            for setting, what, _ in SERVERS:
                named = _http(os.environ.get(setting))
                if named and urlsplit(named).netloc == netloc:
                    return _gone(what, named, setting, e, exc)
            if "/api/" in url and not _http(os.environ.get(PREFECT_ENV)):
                return _gone("Prefect's temporary local API", url.split("/api/")[0], None, e, exc)
    return None


def _gone(what: str, url: str, setting: str | None, e: BaseException, outer: BaseException) -> ServerUnavailable:
    fix = f"start it or fix {setting}" if setting else "it is started by lensflow for the run; see <home>/logs"
    why = CONNECTION_TEXT.search(str(e))
    return ServerUnavailable(f"{what} {url} stopped answering during the run ({why[0] if why else type(e).__name__}, "
                             f"in {operation(e, outer)}): {fix}, then run again; "
                             f"the live publication is unchanged")


def classify(exc: BaseException, paths=None) -> OSError | RuntimeError | None:
    """DiskFull or ServerUnavailable when a full disk or a server that went away caused exc, else None."""
    if isinstance(exc, (DiskFull, ServerUnavailable)):
        return exc
    return _disk_full(exc, paths) or _server_gone(exc)
