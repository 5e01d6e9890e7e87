"""Faults of the environment, with real components: two real `lensflow` processes on one data home, a real small
file system that fills up, real MLflow and Prefect servers that are down or stop mid-run. Each case asserts the
one line on stderr, exit 6 and that the lake, the publications and the registry are as they were; the seconds
each case took are written to $LENSFLOW_RELIABILITY_OUT/environment_faults.json (reported, never asserted).

A run is stopped at an exact step with $LENSFLOW_PAUSE_AT=<step>:<file> (tasks/core/faults.py): the test breaks the
environment there, then lets the run go on into the fault.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port, wait_healthy
from tests.reliability import helpers

FIGURES: dict[str, float] = {}
TINY = '{"epochs": 2, "n_factors": 8}'


def lensflow(*args: str, home: Path, env: dict | None = None, pause: tuple[str, Path] | None = None,
             background: bool = False):
    """The real command in a fresh process (its own Prefect temporary API unless env names a server)."""
    full = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        if name not in (env or {}):
            full.pop(name, None)
    if "LENSFLOW_LOCK_WAIT" not in (env or {}):
        full.pop("LENSFLOW_LOCK_WAIT", None)
    if pause:
        full["LENSFLOW_PAUSE_AT"] = f"{pause[0]}:{pause[1]}"
    argv = [sys.executable, "-m", "flows", *args, "--home", str(home)]
    if background:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    return subprocess.run(argv, cwd=REPO_ROOT, env=full, capture_output=True, text=True, timeout=600)


def session_api() -> dict:
    """The env that points a command at the session's Prefect API (the prefect_api fixture), so that it does not
    start a temporary one of its own (about 10 s a command). For the cases about the data home and the disk; the
    cases about starting or losing a server keep their own."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value()}


def wait_reached(go: Path, proc: subprocess.Popen) -> None:
    """Until the paused run has reached its step (it writes '<go>.reached'); fails if it ended first."""
    while not Path(str(go) + ".reached").exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its pause ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        time.sleep(0.1)


def one_line(stderr: str, code: int, rc: int, *words: str) -> str:
    assert rc == code, (rc, stderr[-3000:])
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lensflow: "), stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def registry_versions(db: Path) -> list[tuple]:
    """Every registered model version of a SQLite MLflow store (name, version, status)."""
    if not db.is_file():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return sorted(con.execute("select name, version, status from model_versions").fetchall())


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("env-sources")
    return [helpers.make_source(root / f"src{seed}", seed) for seed in (1, 2, 3)]


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield FIGURES
    helpers.save_results("environment_faults", FIGURES)


# --- 1. one writer per data location ------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_writer_is_refused_or_waits_and_readers_are_not_blocked(tmp_path, sources, prefect_api):
    paths = helpers.build_published_home(tmp_path / "home", sources[0])
    go, api = tmp_path / "go", session_api()
    first = lensflow("ingest", "--source", str(sources[1]), home=paths.home, env=api, pause=("write-lake-snapshot", go),
                     background=True)
    try:
        wait_reached(go, first)
        before = helpers.state(paths)
        started = time.monotonic()
        second = lensflow("ingest", "--source", str(sources[2]), home=paths.home, env=api)
        FIGURES["lock_refusal_s"] = round(time.monotonic() - started, 2)
        line = one_line(second.stderr, 6, second.returncode, "data location", str(paths.data), "`lensflow ingest`",
                        f"pid {first.pid}", "LENSFLOW_LOCK_WAIT")
        assert helpers.state(paths) == before, line
        reader = lensflow("query", "top10", "--user", "1", home=paths.home)   # readers never take the lock
        assert reader.returncode == 0 and reader.stdout.strip(), reader.stderr
        waiting = lensflow("ingest", "--source", str(sources[2]), home=paths.home,
                           env={**api, "LENSFLOW_LOCK_WAIT": "600"}, background=True)
        time.sleep(2)
        assert waiting.poll() is None   # it waits while the first holds the data location (its line: below)
        go.touch()
        assert first.wait(timeout=600) == 0, first.stderr.read()[-3000:]
        out, err = waiting.communicate(timeout=600)
        assert waiting.returncode == 0, err[-3000:]
        assert "waiting for the data location" in err and f"pid {first.pid}" in err, err
    finally:
        for proc in (first,):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    from tasks.stores import lake
    from tasks.sources import movielens

    assert lake.current_hash(paths) == movielens.content_hash(sources[2])   # the waiting run went second


@pytest.mark.slow
def test_a_lock_left_by_a_killed_run_never_blocks_the_next(tmp_path, sources):
    paths = helpers.build_published_home(tmp_path / "home", sources[0])
    go = tmp_path / "go"
    killed = lensflow("ingest", "--source", str(sources[1]), home=paths.home, pause=("write-lake-snapshot", go),
                      background=True)
    wait_reached(go, killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    after = lensflow("ingest", "--source", str(sources[1]), home=paths.home)
    assert after.returncode == 0, after.stderr[-3000:]


def test_publish_refuses_versions_other_than_the_ones_this_run_fitted():
    from flows.publish import _check_expected
    from tasks.core import contract as c
    from tasks.core.errors import DataLocationBusy
    from tasks.registry.model_ref import ModelRef, ServingModel

    ref = ModelRef(c.registered_model_name(c.MODEL_KIND_DOT), "7", "models:/x/7", "run", "split", "hash")
    model = ServingModel(None, ref, {}, None, c.ALIAS_SERVING)
    _check_expected([model], {c.MODEL_KIND_DOT: "7"})
    with pytest.raises(DataLocationBusy, match="fitted lensflow-dot_bias v6 for serving, but `serving` now gives v7"):
        _check_expected([model], {c.MODEL_KIND_DOT: "6"})


# --- 3. a full disk ---------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 64 MiB tmpfs; skipped where this machine does not let the tests mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system to the last byte; returns the ballast file (delete it to free the space)."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return ballast


def _fault_at(step: str, args: tuple, paths, tmp_path, disk: Path, env: dict) -> None:
    go = tmp_path / f"go-{step}"
    before, registry = helpers.state(paths), registry_versions(paths.mlflow_db)
    proc = lensflow(*args, home=paths.home, env=env, pause=(step, go), background=True)
    wait_reached(go, proc)
    ballast = fill(disk)
    started = time.monotonic()
    go.touch()
    out, err = proc.communicate(timeout=600)
    FIGURES[f"disk_full_{step}_s"] = round(time.monotonic() - started, 2)
    one_line(err, 6, proc.returncode, "disk full", str(disk), "(in ")
    ballast.unlink()
    assert helpers.state(paths) == before
    assert registry_versions(paths.mlflow_db) == registry   # no half-registered version for a later run
    again = lensflow(*args, home=paths.home, env=env)   # space freed: the same command works
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.slow
def test_a_full_disk_is_one_line_exit_6_and_changes_nothing(tmp_path, sources, small_disk, prefect_api):
    paths = helpers.build_published_home(small_disk / "home", sources[0])
    env = session_api()   # the API's database is not on the small disk, as a server's would not be
    _fault_at("write-lake-snapshot", ("ingest", "--source", str(sources[1])), paths, tmp_path, small_disk, env)
    _fault_at("log-register-promote", ("train", "--config", TINY), paths, tmp_path, small_disk, env)
    _fault_at("score-check-publish", ("publish", "--version", "candidate"), paths, tmp_path, small_disk, env)


# --- 4. unreachable servers ---------------------------------------------------------------------------

@pytest.mark.parametrize("setting,url,args", [
    ("MLFLOW_TRACKING_URI", "http://127.0.0.1:{port}", ("run", "--source", "{src}")),
    ("PREFECT_API_URL", "http://127.0.0.1:{port}/api", ("ingest", "--source", "{src}")),
])
def test_a_server_that_is_down_is_refused_before_any_step(tmp_path, sources, setting, url, args):
    url = url.format(port=free_port())
    home = tmp_path / "home"
    started = time.monotonic()
    proc = lensflow(*(a.format(src=sources[0]) for a in args), home=home, env={setting: url})
    FIGURES[f"down_before_run_{setting}_s"] = round(time.monotonic() - started, 2)
    one_line(proc.stderr, 6, proc.returncode, url, setting, "does not answer", "nothing was run")
    assert not (home / "lake").exists() and not (home / "warehouse").exists()


def _server(argv: list[str], health: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    wait_healthy(health, proc, timeout=240)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["mlflow", "prefect"])
def test_a_server_stopped_mid_run_ends_it_in_one_line(tmp_path, sources, which):
    paths = helpers.build_published_home(tmp_path / "home", sources[0])
    port, store = free_port(), tmp_path / "server"
    store.mkdir()
    if which == "mlflow":
        exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
        server = _server([exe, "server", "--backend-store-uri", f"sqlite:///{store}/mlflow.db", "--artifacts-destination",
                          str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                         f"http://127.0.0.1:{port}/health")
        setting, url = "MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}"
    else:
        exe = shutil.which("prefect") or str(Path(sys.executable).with_name("prefect"))
        server = _server([exe, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                         f"http://127.0.0.1:{port}/api/health",
                         env={"PREFECT_HOME": str(store), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        setting, url = "PREFECT_API_URL", f"http://127.0.0.1:{port}/api"
    go = tmp_path / "go"
    try:
        before = helpers.state(paths)
        proc = lensflow("train", "--config", TINY, home=paths.home, env={setting: url},
                        pause=("log-register-promote", go), background=True)
        wait_reached(go, proc)
        _stop(server)
        started = time.monotonic()
        go.touch()
        out, err = proc.communicate(timeout=600)
        FIGURES[f"{which}_stopped_mid_run_s"] = round(time.monotonic() - started, 2)
        one_line(err, 6, proc.returncode, url, setting, "stopped answering during the run")
        assert helpers.state(paths) == before
        if which == "mlflow":
            assert registry_versions(store / "mlflow.db") == []   # nothing registered half-way
    finally:
        _stop(server)
