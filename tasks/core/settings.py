"""The data home: one directory holding the raw cache, lake, warehouse, MLflow store and Prefect home.

Resolution order: explicit argument (CLI `--home`), `$LENSFLOW_HOME`, `./.lensflow` (git-ignored).

The data (raw cache, lake, splits, publications, warehouse) can live apart from the home, in a
location several hosts share: `$LENSFLOW_DATA_URI`, a path or a `file://` URI. The home then keeps
what is each host's own: scratch files, logs, the Prefect home and the local MLflow store (which
`$MLFLOW_TRACKING_URI` replaces by a tracking server). Unset, the data lives in the home.
This module imports nothing heavy so it can run before Prefect or MLflow are imported.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import ConfigError

HOME_ENV = "LENSFLOW_HOME"
DATA_ENV = "LENSFLOW_DATA_URI"      # shared data location: a path or file:// URI (default: the home)
DEFAULT_HOME = ".lensflow"
# Captured at first import, before lensflow sets it: a user's own PREFECT_HOME always wins.
_USER_PREFECT_HOME = os.environ.get("PREFECT_HOME")


def data_home(override: str | os.PathLike | None = None) -> Path:
    """The data home as an absolute path (not created)."""
    raw = override or os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(raw).expanduser().resolve()


def data_location(value: str | os.PathLike | None = None) -> Path | None:
    """The shared data location from `value` or `$LENSFLOW_DATA_URI` as an absolute path; None when unset.

    Accepts a path or a `file://` URI. Any other scheme (s3://, gs://, ...) is refused with one line:
    the lake's pointer files need an atomic rename, which object stores do not offer (deployments/README.md).
    """
    raw = str(value if value is not None else os.environ.get(DATA_ENV) or "").strip()
    if not raw:
        return None
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{DATA_ENV}={raw}: a file:// URI names a local path (file:///shared/lensflow), "
                             f"not host {parts.netloc!r}; mount the share and name the mount point")
        raw = urllib.parse.unquote(parts.path)
    elif parts.scheme and len(parts.scheme) > 1:   # one letter: a Windows drive, not a scheme
        raise ConfigError(f"{DATA_ENV}={raw}: scheme {parts.scheme}:// is not supported; name a path or a "
                         f"file:// URI on a file system every worker mounts (object storage: deployments/README.md)")
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True)
class Paths:
    """Every location under one data home; the data itself under `data` (the home unless set apart)."""

    home: Path
    data: Path | None = None   # the shared data location; None: the home

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data) if self.data is not None else self.home)

    @property
    def data_uri(self) -> str:
        """The data location as a URI (what `LENSFLOW_DATA_URI` on another worker should name)."""
        return self.data.as_uri()

    @property
    def raw(self) -> Path:
        return self.data / "raw"            # downloaded archives, extracted sources

    @property
    def lake(self) -> Path:
        return self.data / "lake"           # Parquet snapshots of the source tables

    @property
    def splits(self) -> Path:
        return self.data / "splits"         # Parquet per stored split

    @property
    def publications(self) -> Path:
        return self.data / "publications"   # Parquet snapshot per publication

    @property
    def publication_metrics(self) -> Path:
        return self.publications / "metrics"   # one figures file per publication ever made, never pruned

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse" / "lensflow.duckdb"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow" / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @property
    def logs(self) -> Path:
        return self.home / "logs"           # lensflow.log: Prefect's and MLflow's log lines

    @property
    def tmp(self) -> Path:
        return self.home / "tmp"            # scratch folders (model files on their way to MLflow); swept

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def mlflow_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_db}"


DEVICE_ENV = "LENSFLOW_DEVICE"   # cpu | cuda | cuda:N | auto; the `gpu` work pool sets cuda


def device(override: str | None = None) -> str | None:
    """The device to train and score on: the argument, else $LENSFLOW_DEVICE, else None (auto).

    Read at a run's entry only; the library takes the device as an argument."""
    return override or os.environ.get(DEVICE_ENV) or None


MLFLOW_UI_ENV = "LENSFLOW_MLFLOW_UI_URL"   # where a browser opens the MLflow UI: every link in logs and artifacts
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


def mlflow_ui_url(tracking_uri: str = "") -> str:
    """The MLflow UI's address that links point at: $LENSFLOW_MLFLOW_UI_URL, else an http(s) tracking URI (a
    tracking server serves its UI), else http://127.0.0.1:5000 (`lensflow mlflow-ui`'s default address)."""
    chosen = (os.environ.get(MLFLOW_UI_ENV) or "").strip()
    if not chosen and str(tracking_uri).startswith(("http://", "https://")):
        chosen = str(tracking_uri)
    chosen = chosen or DEFAULT_MLFLOW_UI
    parts = urllib.parse.urlsplit(chosen)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{MLFLOW_UI_ENV}={chosen}: the MLflow UI's address is an http(s) URL, "
                          f"such as http://127.0.0.1:5055")
    return chosen.rstrip("/")


def mlflow_ui_port() -> int:
    """The port `lensflow mlflow-ui` listens on by default: the one links point at (mlflow_ui_url)."""
    parts = urllib.parse.urlsplit(mlflow_ui_url())
    return parts.port or (443 if parts.scheme == "https" else 80)


DASK_ADDRESS_ENV = "LENSFLOW_DASK_ADDRESS"   # tcp://host:8786: the Dask scheduler that runs publish's shards
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")   # Dask's comm protocols that name a host and a port


def parse_dask_address(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a Dask scheduler address `tcp://host:8786` (a bare `host:8786` is tcp)."""
    text = str(address).strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    host, colon, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host   # [::1]:8786
    if (scheme not in DASK_SCHEMES or not colon or not host or "/" in rest or not port.isdigit()
            or not 0 < int(port) < 65536):
        raise ConfigError(f"a Dask scheduler address looks like tcp://host:8786 ({', '.join(DASK_SCHEMES)}), "
                          f"got {address!r}")
    return scheme, host, int(port)


def dask_address(override: str | None = None) -> str | None:
    """The Dask scheduler for sharded scoring: the argument, else $LENSFLOW_DASK_ADDRESS, else None
    (threads in this process). A malformed address raises ConfigError."""
    chosen = (override or os.environ.get(DASK_ADDRESS_ENV) or "").strip() or None
    if chosen:
        parse_dask_address(chosen)
    return chosen


def paths(override: str | os.PathLike | None = None) -> Paths:
    """Paths for the resolved data home and data location (`$LENSFLOW_DATA_URI`, else the home).

    Called once per command or flow run, at its entry (`flows/cli.py`, `flows/guard.py`); the Paths is passed
    on as it is from there."""
    return Paths(data_home(override), data_location())


def apply_environment(override: str | os.PathLike | None = None) -> Paths:
    """Point Prefect at the data home unless the user chose otherwise; call before importing prefect.

    Sets environment variables only: nothing is created on disk (see `prepare_prefect_home`). Returns the
    Paths, so a bad `$LENSFLOW_DATA_URI` raises ConfigError here (`prepare_environment` never does).
    """
    prepare_environment(override)
    mlflow_ui_url()   # a bad $LENSFLOW_MLFLOW_UI_URL is refused now, not when the first link is made
    return paths(override)


MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


def prepare_environment(override: str | os.PathLike | None = None) -> Path:
    """The environment part of `apply_environment` (what importing `flows` does); returns the home."""
    home = data_home(override)
    if override:
        os.environ[HOME_ENV] = str(home)
    if not _USER_PREFECT_HOME:
        os.environ["PREFECT_HOME"] = str(Paths(home).prefect_home)
    # The temporary API can take longer than Prefect's 20 s default to start on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # No network here, and no reason to phone home from a batch job.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    # A tracking server that stops answering fails the run in seconds, not after MLflow's 7 retries (~4.5 min).
    # The same for the Prefect API (its default, 5 retries with back-off, took 4.6 min after a server stopped). Three,
    # not two: a SQLite-backed API that is busy answers 503 (SQLITE_BUSY) for a few seconds under two trainings on two
    # cores, and two retries (2 + 4 s of back-off) once failed a pipeline run that way; three wait 2 + 4 + 8 s.
    for name, value in {**MLFLOW_HTTP_DEFAULTS, "PREFECT_CLIENT_MAX_RETRIES": "3"}.items():
        os.environ.setdefault(name, value)
    return home


def prepare_prefect_home() -> Path:
    """Create PREFECT_HOME with its parents, before a flow runs.

    Prefect creates PREFECT_HOME but not its parents; its temporary server then cannot open its
    database and the client waits out the whole startup timeout.
    """
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
