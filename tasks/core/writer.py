"""One writer per data location: runs that change the lake, splits, registry decisions or publications hold
`<data>/.lensflow-writer.lock` for their whole run, so two runs never interleave their decisions.

The lock is `filelock.FileLock` (an OS `flock`): the kernel drops it when its process ends, however it ends, so
a lock left by a killed run never blocks the next one. Who holds it is written beside it
(`.lensflow-writer.json`: what, pid, host, since) and named by a run that is refused or waits. Readers (queries,
the DuckDB CLI) never take it. Within one process the hold is shared: the pipeline's subflows and its training
threads run under the hold their command or top-level flow took.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from filelock import FileLock, Timeout

from tasks.core import durable
from tasks.core.errors import ConfigError, DataLocationBusy
from tasks.core.settings import Paths

LOCK_NAME = ".lensflow-writer.lock"
HOLDER_NAME = ".lensflow-writer.json"
WAIT_ENV = "LENSFLOW_LOCK_WAIT"    # seconds a run waits for the data location (0: refused at once)

_guard = threading.Lock()
_held: dict[str, int] = {}         # lock path -> how many holds this process has open on it


def lock_path(paths: Paths):
    return paths.data / LOCK_NAME


def wait_seconds(default: float) -> float:
    """$LENSFLOW_LOCK_WAIT as seconds (negative: without end), else `default`."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{WAIT_ENV}={raw!r}: give the seconds to wait for the data location, e.g. 600") from None


def holder(paths: Paths) -> str:
    """Who holds the data location, in words ('`lensflow run` (pid 4242 on host-a, since 10:02:03 UTC)')."""
    try:
        info = json.loads((paths.data / HOLDER_NAME).read_text())
        return f"{info['what']} (pid {info['pid']} on {info['host']}, since {info['since']})"
    except (OSError, ValueError, KeyError):
        return "another run (it has not said who it is yet)"


def held_here(paths: Paths) -> bool:
    """True while this process holds the data location."""
    with _guard:
        return _held.get(str(lock_path(paths)), 0) > 0


@contextmanager
def hold(paths: Paths, what: str, wait_s: float = 0.0, say=print):
    """Hold the data location's writer lock for the block.

    Taken at once when free. Otherwise wait_s 0 refuses at once with DataLocationBusy naming the holder; a
    positive wait_s says once that it waits (via `say`) and waits that long (negative: without end), then refuses.
    A hold already open in this process is shared (nothing is taken twice).
    """
    key = str(lock_path(paths))
    with _guard:
        if _held.get(key):
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _guard:
                _held[key] -= 1
        return
    paths.data.mkdir(parents=True, exist_ok=True)
    lock = FileLock(key, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        busy = f"data location {paths.data} is being changed by {holder(paths)}"
        if wait_s == 0:
            raise DataLocationBusy(f"{busy}: refused, one writer at a time (readers are not blocked); run again "
                                   f"when it ends, or set {WAIT_ENV}=<seconds> to wait for it") from None
        say(f"lensflow: waiting for the {busy} ({'without end' if wait_s < 0 else f'up to {wait_s:g} s'}, "
            f"{WAIT_ENV})")
        started = time.monotonic()
        try:
            lock.acquire(timeout=wait_s, poll_interval=0.5)
        except Timeout:
            raise DataLocationBusy(f"{busy}: still held after {time.monotonic() - started:.0f} s of waiting "
                                   f"({WAIT_ENV}={wait_s:g}); run again when it ends") from None
    holder_file = paths.data / HOLDER_NAME
    try:
        with _guard:
            _held[key] = 1
        since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        durable.write_text_atomic(holder_file, json.dumps(
            {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": since}))
        yield
    finally:
        with _guard:
            _held.pop(key, None)
        try:
            holder_file.unlink(missing_ok=True)   # before the release: the next holder writes its own
        except OSError:
            pass
        lock.release()
