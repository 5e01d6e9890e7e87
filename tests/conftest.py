"""Shared fixtures. Environment first: Prefect reads it when imported."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="lensflow-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_ROOT / "prefect")
os.environ["LENSFLOW_HOME"] = str(_SESSION_ROOT / "home")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["MLFLOW_ENABLE_TELEMETRY"] = "false"
os.environ.pop("MLFLOW_TRACKING_URI", None)

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_ML100K = REPO_ROOT.parent / "shared" / "data" / "ml-100k"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Poll `url` until it answers 200; fail early with the server's output if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read()[-3000:] if proc.stdout else ""
            raise RuntimeError(f"server for {url} exited with {proc.returncode}: {out}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"server at {url} not healthy after {timeout} s")


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect API for the whole session (~15 s to start, then ~1 s per flow)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh data home for one test, also exported as LENSFLOW_HOME."""
    from tasks.core.settings import Paths

    root = tmp_path / "home"
    monkeypatch.setenv("LENSFLOW_HOME", str(root))
    return Paths(root)


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory) -> Path:
    """A small synthetic data set in MovieLens 100k file formats (deterministic)."""
    from tasks.sources.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic") / "ml-synthetic"
    generate(out, n_users=120, n_items=200, n_ratings=6000, seed=7)
    return out


@pytest.fixture(scope="session")
def real_ml100k() -> Path:
    """The real MovieLens 100k folder beside the checkout; skips when it is absent."""
    if not (REAL_ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens 100k files not found at {REAL_ML100K} (licence forbids shipping them)")
    return REAL_ML100K
