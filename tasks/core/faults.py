"""Deterministic crash points for the crash-safety tests: `LENSFLOW_CRASH_AT=<label>` kills the process there.

Production code calls `maybe_crash("label")` at the few places where a crash would leave the most
interesting half-done state (after staging, after a rename, before a swap). Unset, it costs one
environment lookup. SIGKILL, not an exception: no `finally`, no cleanup, exactly like a power cut.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CRASH_ENV = "LENSFLOW_CRASH_AT"
# Every label production code uses, in pipeline order (the tests iterate over these).
LABELS = (
    "lake-before-rename",        # tasks/stores/lake.py: snapshot written under its temporary name
    "lake-after-rename",         # tasks/stores/lake.py: snapshot complete in place, lake/CURRENT not flipped
    "lake-after-current",        # tasks/stores/lake.py: lake/CURRENT flipped, warehouse not rebuilt yet
    "warehouse-before-replace",  # tasks/stores/warehouse.py: new DuckDB file complete, not swapped in
    "split-before-rename",       # tasks/learning/split.py: split written under its temporary name
    "train-after-log",           # tasks/registry/versions.py: MLflow run logged, no registered version yet
    "train-after-register",      # tasks/registry/versions.py: version registered (candidate), no promotion decision
    "publish-after-stage",       # tasks/publishing/publish.py: staged snapshot written, not checked
    "publish-after-rename",      # tasks/publishing/publish.py: snapshot renamed into place, CURRENT not flipped
    "publish-after-current",     # tasks/publishing/publish.py: publications/CURRENT flipped, warehouse not rebuilt
)


def maybe_crash(label: str) -> None:
    """SIGKILL this process if $LENSFLOW_CRASH_AT names `label` (comma-separated names allowed)."""
    wanted = os.environ.get(CRASH_ENV)
    if wanted and label in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)


PAUSE_ENV = "LENSFLOW_PAUSE_AT"   # '<step name>:<file>': stop before that step until <file> exists


def maybe_pause(label: str, poll_s: float = 0.1) -> None:
    """If $LENSFLOW_PAUSE_AT is '<label>:<file>', create '<file>.reached' and wait until <file> exists.

    For the environment-fault tests: a test waits for '.reached', breaks the environment (fills the disk, stops a
    server) at exactly that point of a real run, then creates <file> to let the run go on into the fault.
    """
    wanted = os.environ.get(PAUSE_ENV, "")
    name, sep, go = wanted.partition(":")
    if not sep or name != label:
        return
    Path(go + ".reached").write_text(str(os.getpid()))
    while not os.path.exists(go):
        time.sleep(poll_s)
