"""Shared fixtures. Environment first: Prefect reads it when imported."""

from __future__ import annotations

import os
import tempfile
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


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect API for the whole session (~15 s to start, then ~1 s per flow)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh data home for one test, also exported as LENSFLOW_HOME."""
    from tasks.settings import Paths

    root = tmp_path / "home"
    monkeypatch.setenv("LENSFLOW_HOME", str(root))
    return Paths(root)


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory) -> Path:
    """A small synthetic data set in MovieLens 100k file formats (deterministic)."""
    from tasks.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic") / "ml-synthetic"
    generate(out, n_users=120, n_items=200, n_ratings=6000, seed=7)
    return out


@pytest.fixture(scope="session")
def real_ml100k() -> Path:
    """The real MovieLens 100k folder beside the checkout; skips when it is absent."""
    if not (REAL_ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens 100k files not found at {REAL_ML100K} (licence forbids shipping them)")
    return REAL_ML100K
