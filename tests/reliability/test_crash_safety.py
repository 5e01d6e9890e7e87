"""Crash safety: SIGKILL during ingest, training and publish never leaves a broken or mixed warehouse.

Deterministic kill points: a child process runs one plain pipeline step with `LENSFLOW_CRASH_AT=<label>`
(tasks/core/faults.py) and dies by SIGKILL exactly there. Then: the warehouse opens, serves one complete
publication that is a `publications` row with matching row counts, publications/CURRENT names a
complete snapshot, and a rerun of the step (then a publish) finishes with CURRENT = served id.
Timed kills: a real `lensflow run` subprocess killed at seeded random moments inside its ingest,
train and publish subflows, then run again to completion.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tasks.core import contract as c
from tasks.core import faults
from tasks.stores import lake
from tasks.stores import publications as store
from tasks.registry.model_ref import ModelRef
from tests.reliability import helpers

REPO = helpers.REPO
RESULTS: list[dict] = []  # one entry per kill, printed at the end of the module (pytest -s to see)

# (step the child runs, label it dies at): every label of tasks/core/faults.py at least once.
KILL_POINTS = [
    ("ingest", "lake-before-rename"),
    ("ingest", "lake-after-rename"),
    ("ingest", "lake-after-current"),
    ("ingest", "warehouse-before-replace"),
    ("train", "split-before-rename"),
    ("train", "train-after-log"),
    ("train", "train-after-register"),
    ("publish", "publish-after-stage"),
    ("publish", "publish-after-rename"),
    ("publish", "publish-after-current"),
    ("publish", "warehouse-before-replace"),
]


# Kill points after which a pointer is ahead of the warehouse until the rerun: which pointer.
POINTER_AHEAD = {
    ("ingest", "lake-after-current"): "lake",
    ("ingest", "warehouse-before-replace"): "lake",
    ("publish", "publish-after-current"): "publication",
    ("publish", "warehouse-before-replace"): "publication",
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A published home built from source A, and a second source B for the ingest kills."""
    root = tmp_path_factory.mktemp("crash")
    source_a = helpers.make_source(root / "a", seed=21)
    source_b = helpers.make_source(root / "b", seed=22, users=70, items=90, ratings=1800)
    paths = helpers.build_published_home(root / "home", source_a)
    from tasks.registry import mlflow_store

    mlflow_store.client(paths)  # the MLflow store exists (its creation is tested on its own below)
    yield paths, source_a, source_b
    if RESULTS:  # the figures docs/reliability.md quotes (pytest -s shows them; the env var keeps them)
        print("\ncrash-safety results:\n" + "\n".join(json.dumps(r) for r in RESULTS))
        helpers.save_results("crash_safety", RESULTS)


def child_env(home, **extra) -> dict:
    env = {key: v for key, v in os.environ.items() if key != faults.CRASH_ENV}
    return {**env, "LENSFLOW_HOME": str(home), "PYTHONPATH": str(REPO), **extra}


def run_step(step: str, paths, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    extra = {faults.CRASH_ENV: crash_at} if crash_at else {}
    return subprocess.run([sys.executable, "-m", "tests.reliability.helpers", step, str(paths.home), *args],
                          cwd=REPO, env=child_env(paths.home, **extra), capture_output=True, text=True,
                          timeout=300)


def test_every_fault_label_sits_in_the_code_and_is_killed_here():
    import re

    calls = re.compile(r'maybe_crash\("([\w-]+)"\)')
    placed = {m for f in (REPO / "tasks").rglob("*.py") if f.name != "faults.py" for m in calls.findall(f.read_text())}
    assert placed == set(faults.LABELS)
    assert {label for _, label in KILL_POINTS} == set(faults.LABELS)


def undecided_versions(paths) -> list[str]:
    """Registered dot-bias versions without a promotion decision (left by a kill after register)."""
    from tasks.registry import mlflow_store
    from tasks.registry import versions as registry

    if not paths.mlflow_db.is_file():
        return []
    cl = mlflow_store.client(paths)
    versions = cl.search_model_versions(f"name = '{c.registered_model_name(c.MODEL_KIND_DOT)}'")
    return sorted(v.version for v in versions if registry.TAG_DECISION not in v.tags)


@pytest.mark.parametrize("step,label", KILL_POINTS, ids=[f"{s}:{lbl}" for s, lbl in KILL_POINTS])
def test_kill_at_labelled_point_leaves_a_consistent_warehouse_and_a_rerun_publishes(step, label, base, tmp_path):
    from tasks.sources import movielens
    from tasks.registry import promote
    from tasks.registry import versions as registry
    from tasks.stores import warehouse

    home, source_a, source_b = base
    paths = helpers.copy_home(home, tmp_path / "home")
    before = helpers.check_consistent(paths)
    args = {"ingest": [str(source_b)], "train": ["7"], "publish": []}[step]

    done = run_step(step, paths, *args, crash_at=label)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stdout[-2000:], done.stderr[-4000:])

    after = helpers.check_consistent(paths)  # warehouse opens, one complete listed publication
    assert after["served"] == before["served"]  # the killed step never made a half-done thing live
    if (step, label) in POINTER_AHEAD:
        # The window between a pointer flip and the warehouse swap: the pointer names the new, complete
        # snapshot while readers still get the old warehouse. The rerun must not call that up to date.
        ahead = POINTER_AHEAD[(step, label)]
        if ahead == "publication":
            assert not after["agree"] and after["lake"] == after["warehouse_data_hash"]
            record = json.loads((paths.publications / after["current"] / store.RECORD_FILE).read_text())
            refs = [ModelRef(record[c.MODEL_NAME], record[c.MODEL_VERSION])]
            assert warehouse.live_publication_matches(paths, refs, record[c.DATA_HASH]) is None
        else:
            assert after["agree"]
            assert after["lake"] == movielens.content_hash(source_b) != after["warehouse_data_hash"]
            assert not helpers.warehouse_up_to_date(paths, after["lake"])
    else:
        assert after["agree"] and after["lake"] == after["warehouse_data_hash"] == before["lake"], after
    left = helpers.leftovers(paths)

    # Rerun the killed step to the end, then publish: everything agrees again.
    if step == "ingest":
        want_hash = helpers.ingest(paths, source_b)
    elif step == "train":
        orphans = undecided_versions(paths)
        if label == "train-after-register":  # registered, never compared with the champion
            assert len(orphans) == 1 and registry.champion_version(paths, c.MODEL_KIND_DOT) is None
        else:
            assert orphans == []
        recorded = helpers.train(paths, 7)
        # an undecided version is not reused (that would skip the champion comparison for good): it trains again
        # and is decided (the tiny model does not beat the popularity floor, so the decision may be a refusal)
        assert recorded is not None and recorded.decision.outcome in (promote.PROMOTED, promote.REFUSED)
        assert registry.champion_version(paths, c.MODEL_KIND_DOT) == (
            recorded.version if recorded.decision.promoted else None)
        assert undecided_versions(paths) == orphans
        want_hash = before["lake"]
    else:
        want_hash = before["lake"]
    published = helpers.publish(paths)
    final = helpers.check_consistent(paths)
    assert final["agree"] and final["served"] == published.publication_id
    assert final["lake"] == final["warehouse_data_hash"] == want_hash
    RESULTS.append({"kill": label, "step": step, "returncode": done.returncode, "served_after_kill": after["served"],
                    "current_agreed_after_kill": after["agree"], "leftovers": len(left),
                    "rerun_published": published.publication_id})


def test_kill_while_mlflow_creates_its_store_leaves_a_usable_store(base, tmp_path):
    """MLflow's first open runs ~50 schema migrations (seconds); a kill in the middle must not poison the home."""
    from tasks.registry import mlflow_store

    home, _, _ = base
    paths = helpers.copy_home(home, tmp_path / "home")
    shutil.rmtree(paths.mlflow_db.parent)
    rng = random.Random(int(os.environ.get("LENSFLOW_CRASH_SEED", "20261123")))
    delays = []
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.helpers", "mlflow-store", str(paths.home)],
                                cwd=REPO, env=child_env(paths.home), stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"   # imports done; the store is being created now
        delays.append(round(rng.uniform(0.2, 1.5), 2))
        time.sleep(delays[-1])
        proc.kill()
        proc.wait(timeout=60)
    cl = mlflow_store.client(paths)                            # opens (or creates) the store and migrates it
    assert mlflow_store.experiment_id(paths) == mlflow_store.experiment_id(paths, mlflow_client=cl)
    assert [e.name for e in cl.search_experiments() if e.name == mlflow_store.EXPERIMENT] == [mlflow_store.EXPERIMENT]
    RESULTS.append({"kill": "mlflow-store-creation", "delays_s": delays, "store_usable_after": True,
                    "leftovers": sorted(p.name for p in paths.mlflow_db.parent.glob(".*tmp-*"))})


# --- timed kills of the real CLI ------------------------------------------------------------------

# (log line that marks the phase, longest random delay after it in seconds)
PHASES = [("for flow 'ingest'", 0.6), ("for flow 'train'", 6.0), ("for flow 'publish'", 1.5)]
TINY_RUN = ["--dot-config", json.dumps(helpers.TINY_DOT), "--nn-config", json.dumps({"epochs": 2}),
            "-n", "10", "-k", "5"]


def start_pipeline(paths, source, api_url: str, *extra: str) -> subprocess.Popen:
    """`lensflow run` in its own session, against the test session's Prefect API (no 15 s server start)."""
    env = child_env(paths.home, PREFECT_API_URL=api_url, PREFECT_HOME=str(paths.home / "prefect"))
    # -v: Prefect's log lines on the terminal, the markers the kills are timed on
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "-v", "--home", str(paths.home), "--source",
                             str(source), *TINY_RUN, *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_during(proc: subprocess.Popen, marker: str, delay: float, timeout: float = 240) -> dict:
    """SIGKILL proc `delay` seconds after `marker` shows in its log; what happened."""
    seen = threading.Event()
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    while not seen.wait(0.2):
        assert proc.poll() is None and time.monotonic() - started < timeout, "".join(lines[-60:])
    at = time.monotonic() - started
    time.sleep(delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: the CLI and anything it started
    proc.wait(timeout=60)
    reader.join(timeout=10)
    last = [ln.split(" - ")[0].split("| ")[-1].strip() for ln in lines if "Task run" in ln or "Flow run" in ln]
    return {"marker": marker, "marker_at_s": round(at, 1), "delay_s": round(delay, 2),
            "killed": not finished_first, "returncode": proc.returncode, "last_log": last[-1] if last else ""}


@pytest.mark.slow
def test_sigkill_of_real_pipeline_runs_then_a_rerun_publishes(base, tmp_path, prefect_api):
    from prefect.settings import PREFECT_API_URL

    home, _, source_b = base
    paths = helpers.copy_home(home, tmp_path / "home")
    api_url = PREFECT_API_URL.value()
    rng = random.Random(int(os.environ.get("LENSFLOW_CRASH_SEED", "20261123")))
    for marker, longest in PHASES:
        # --force: a run the kill came too late for (a fast machine finishes a tiny run within the delay) leaves
        # nothing to do, and without it the next run would stop before its flows and never show its marker
        proc = start_pipeline(paths, source_b, api_url, "--force")
        outcome = kill_during(proc, marker, rng.uniform(0.0, longest))
        state = helpers.check_consistent(paths)
        RESULTS.append({"kill": "timed", **outcome, "served_after_kill": state["served"],
                        "current_agreed_after_kill": state["agree"], "leftovers": len(helpers.leftovers(paths))})
    proc = start_pipeline(paths, source_b, api_url)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-6000:]
    final = helpers.check_consistent(paths)
    assert final["agree"], final
    assert final["lake"] == final["warehouse_data_hash"] == lake.current_hash(paths)
    record = json.loads((paths.publications / final["served"] / store.RECORD_FILE).read_text())
    assert record[c.MODEL_NAME].startswith(c.REGISTERED_MODEL_PREFIX) and record[c.DATA_HASH] == final["lake"]
    RESULTS.append({"kill": "none (rerun)", "returncode": proc.returncode, "served": final["served"]})
