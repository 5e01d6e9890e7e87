"""The deployment path as a team runs it across hosts: a `prefect server`, an `mlflow server` (HTTP, its
own artifact store), work pools, `prefect deploy --all`, and two workers that share nothing but those two
servers and a data location named by setting: each runs in its own checkout with its own home, the
`cpu` worker runs `pipeline/daily`, the `gpu` worker its two `train/gpu` runs. The pipeline must name the
trainings those flow runs left (found by flow-run id through the MLflow server), and the publication must
land in the shared data location. (A reused training is found the same way: checked here through the
server, and end to end on one store in tests/tasks/registry/test_registry.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.workers.process import ProcessWorker

from tasks.core import contract as c
from tasks.registry import versions as registry
from tasks.registry import tracking
from tasks.registry import mlflow_store
from tasks.stores import warehouse
from tasks.core.settings import Paths
from tests.conftest import free_port, wait_healthy
from tests.tasks.registry.test_tracking import empty_store

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What a worker's host needs of the checkout to run the flows (no tests, docs, git history or data).
NOT_CODE = shutil.ignore_patterns(".git", ".venv", ".lensflow", "__pycache__", "*.egg-info", ".pytest_cache",
                                  "tests", "docs", "bench", "shared")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _api(url: str, path: str, body: dict | None = None):
    """One call to the Prefect server's REST API (what the UI and `prefect` CLI use)."""
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _scheduled_runs(api: str, deployment_id: str, wait_s: float = 60) -> list[dict]:
    """The deployment's flow runs in state SCHEDULED, once the server's scheduler has made some (or [])."""
    query = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}
    deadline = time.monotonic() + wait_s
    while not (runs := _api(api, "/flow_runs/filter", query)) and time.monotonic() < deadline:
        time.sleep(2)
    return runs


@pytest.mark.slow
def test_pipeline_on_two_hosts_trains_on_gpu_pool_finds_its_trainings_and_publishes(tmp_path, synthetic_small,
                                                                                     monkeypatch):
    prefect_port, mlflow_port = free_port(), free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    tracking_uri = f"http://127.0.0.1:{mlflow_port}"
    shared = tmp_path / "shared-data"           # the one location both hosts name (a mount on real hosts)
    server_store = Paths(tmp_path / "mlflow-server")
    server_store.mlflow_db.parent.mkdir(parents=True)
    shutil.copyfile(empty_store(), server_store.mlflow_db)  # migrated already: the server starts faster

    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("LENSFLOW_", "MLFLOW_", "PREFECT_")) and k not in ("PYTHONPATH", "PWD")}
    base.update({"PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "5"})
    hosts = {}
    for name in ("cpu-host", "gpu-host"):
        checkout = tmp_path / name / "lensflow"
        shutil.copytree(REPO, checkout, ignore=NOT_CODE)
        # Only the servers and the data location are shared; the home is each host's ./.lensflow.
        hosts[name] = (checkout, {**base, "PYTHONPATH": str(checkout), "PWD": str(checkout),
                                  "HOME": str(tmp_path / name), "PREFECT_HOME": str(tmp_path / name / "prefect"),
                                  "MLFLOW_TRACKING_URI": tracking_uri, "LENSFLOW_DATA_URI": shared.as_uri()})
    # This process asks the MLflow server too (as any host would); a dead server fails fast, not after retries.
    monkeypatch.setenv(mlflow_store.ENV_TRACKING_URI, tracking_uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    procs: list[subprocess.Popen] = []

    def start(argv: list[str], log: str, host: str | None = None) -> subprocess.Popen:
        cwd, env = hosts[host] if host else (tmp_path, {**base, "PREFECT_HOME": str(tmp_path / "prefect-server")})
        p = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True, stdout=open(tmp_path / log, "w"),
                             stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    def prefect(*argv: str, timeout: float = 300) -> str:
        cwd, env = hosts["cpu-host"]
        out = subprocess.run([str(BIN / "prefect"), *argv], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"prefect {' '.join(argv)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def run_pipeline() -> str:
        """One `pipeline/daily` run, watched to its end; its flow run id."""
        out = prefect("deployment", "run", "pipeline/daily", "--param", f"source={synthetic_small}",
                      "--param", 'dot_config={"epochs": 2}', "--param", 'nn_config={"epochs": 2}',
                      "--param", "n=10", "--param", "k=5", "--watch", "--watch-timeout", "600", timeout=660)
        return next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)

    try:
        server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                       "prefect-server.log")
        mlflow = start(registry.server_command(server_store, mlflow_port), "mlflow-server.log")
        wait_healthy(f"{api}/health", server)
        wait_healthy(f"{tracking_uri}/health", mlflow)
        # The pools as `prefect work-pool create NAME --type process` makes them (the process worker's default
        # job template), through the API: each CLI call would cost a Prefect import, ~9 s here.
        template = ProcessWorker.get_default_base_job_template()
        for pool in ("cpu", "gpu"):
            _api(api, "/work_pools/", {"name": pool, "type": "process", "base_job_template": template})
        # The workers start while the deployments are made: each is a process start of its own.
        start([str(BIN / "prefect"), "worker", "start", "--pool", "cpu"], "worker-cpu.log", "cpu-host")
        start([str(BIN / "prefect"), "worker", "start", "--pool", "gpu"], "worker-gpu.log", "gpu-host")
        # This CPU machine stands in for the GPU host: the `gpu` pool's LENSFLOW_DEVICE=cuda would (rightly)
        # refuse to train here, so the deployed copy asks for `auto`; everything else is the shipped file.
        checkout = hosts["cpu-host"][0]
        shipped = (checkout / "deployments" / "prefect.yaml").read_text()
        assert "LENSFLOW_DEVICE: cuda" in shipped and "$PWD" not in shipped
        (tmp_path / "prefect.yaml").write_text(shipped.replace("LENSFLOW_DEVICE: cuda", "LENSFLOW_DEVICE: auto"))
        deployed = prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(tmp_path / "prefect.yaml"))
        assert "pipeline/daily" in deployed and "train/gpu" in deployed

        pipeline_run = run_pipeline()
        # The daily schedule from the shipped file is on the server: its next runs are scheduled, at 03:00 UTC.
        daily = _api(api, "/deployments/name/pipeline/daily")
        assert [(s["schedule"]["cron"], s["active"]) for s in daily["schedules"]] == [("0 3 * * *", True)]
        scheduled = _scheduled_runs(api, daily["id"])
        assert scheduled and all(r["expected_start_time"][11:19] == "03:00:00" for r in scheduled), \
            (scheduled, (tmp_path / "prefect-server.log").read_text()[-3000:])
        train_dep = _api(api, "/deployments/name/train/gpu")
        # No path of the deploying machine is stored: the pull step is resolved on each worker's host.
        assert train_dep["pull_steps"] == [{"flows.checkout.use_checkout": {}}]
        trainings = _api(api, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [pipeline_run]}},
                                                     "deployments": {"id": {"any_": [train_dep["id"]]}}})
        logs = [entry["message"] for entry in _api(api, "/logs/filter", {
            "logs": {"flow_run_id": {"any_": [pipeline_run]}}, "sort": "TIMESTAMP_DESC", "limit": 200})]

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        experiment = client.get_experiment_by_name(mlflow_store.EXPERIMENT).experiment_id
        assert sorted(fr["parameters"]["kind"] for fr in trainings) == sorted(c.MODEL_KINDS), trainings
        for fr in trainings:
            assert fr["state_type"] == "COMPLETED" and fr["work_pool_name"] == "gpu", fr
            kind = fr["parameters"]["kind"]
            # The training flow run logged and registered its own MLflow run, through the server.
            (run,) = client.search_runs([experiment], f"tags.`{tracking.TAG_FLOW_RUN_ID}` = '{fr['id']}'")
            assert run.data.tags[tracking.TAG_KIND] == kind and run.info.artifact_uri.startswith("mlflow-artifacts:")
            (mv,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
            # The pipeline's summary names that version, its decision (not "reused") and that MLflow run.
            line = next((m for m in logs if m.startswith(f"{c.registered_model_name(kind)} v{mv.version}:")), None)
            assert line is not None and run.info.run_id in line, logs
            assert line.split(":", 1)[1].split()[0] in ("promoted", "refused", "kept"), line
            # A later training flow run that reuses this version is found the same way, through the server.
            later = "00000000-0000-4000-8000-00000000000" + str(c.MODEL_KINDS.index(kind))
            via_server = Paths(tmp_path / "anyone")
            assert via_server.mlflow_tracking_uri == tracking_uri
            assert registry.training_of_flow_run(via_server, kind, later) is None
            registry.mark_reused(via_server, kind, mv.version, later, f"train-{kind}-later")
            ref, reused = registry.training_of_flow_run(via_server, kind, later)
            assert (ref.version, ref.run_id, reused) == (mv.version, run.info.run_id, True)
    finally:
        for p in reversed(procs):
            _stop(p)

    # Each host used its own home for its own files, and neither read or wrote data there.
    for name in ("cpu-host", "gpu-host"):
        own = tmp_path / name / "lensflow" / ".lensflow"
        assert own.is_dir() and not (own / "lake").exists() and not (own / "splits").exists(), name
    data = Paths(tmp_path / "anyone", data=shared)
    con = warehouse.connect_readonly(data)
    try:
        (count, pubs), = con.sql(f"select count(*), count(distinct {c.PUBLICATION_ID}) from {c.RECOMMENDATIONS}"
                                 ).fetchall()
        (recorded,), = con.sql(f"select count(*) from {c.PUBLICATIONS}").fetchall()
    finally:
        con.close()
    assert count > 0 and pubs == 1 and recorded == 1
    assert any(line.startswith("published ") for line in logs), logs
