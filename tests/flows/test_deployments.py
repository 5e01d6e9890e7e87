"""The deployment path as a team runs it: `prefect server`, work pools, `prefect deploy --all`, workers,
a triggered `pipeline/daily` run that trains on the `gpu` pool, and a publication in DuckDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tasks import contract as c
from tasks import warehouse
from tasks.settings import Paths
from tests.conftest import free_port, wait_healthy

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_pipeline_deployment_trains_on_gpu_pool_and_publishes(tmp_path, synthetic_small):
    port = free_port()
    home = Paths(tmp_path / "home")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_WORKER_PREFETCH_SECONDS": "5", "LENSFLOW_HOME": str(home.home), "PWD": str(REPO)}
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    procs: list[subprocess.Popen] = []

    def start(*argv: str, log: str) -> subprocess.Popen:
        p = subprocess.Popen([str(BIN / "prefect"), *argv], cwd=REPO, env=env, start_new_session=True,
                             stdout=open(tmp_path / log, "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    def prefect(*argv: str, timeout: float = 300) -> str:
        out = subprocess.run([str(BIN / "prefect"), *argv], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"prefect {' '.join(argv)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    try:
        server = start("server", "start", "--host", "127.0.0.1", "--port", str(port), log="server.log")
        wait_healthy(f"http://127.0.0.1:{port}/api/health", server)
        for pool in ("cpu", "gpu"):
            prefect("work-pool", "create", pool, "--type", "process")
        # This CPU machine stands in for the GPU worker: the `gpu` pool's LENSFLOW_DEVICE=cuda would (rightly)
        # refuse to train here, so the deployed copy asks for `auto`; everything else is the shipped file.
        shipped = (REPO / "deployments" / "prefect.yaml").read_text()
        assert "LENSFLOW_DEVICE: cuda" in shipped
        (tmp_path / "prefect.yaml").write_text(shipped.replace("LENSFLOW_DEVICE: cuda", "LENSFLOW_DEVICE: auto"))
        deployed = prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(tmp_path / "prefect.yaml"))
        assert "pipeline/daily" in deployed and "train/gpu" in deployed
        start("worker", "start", "--pool", "cpu", log="worker-cpu.log")
        start("worker", "start", "--pool", "gpu", log="worker-gpu.log")

        prefect("deployment", "run", "pipeline/daily", "--param", f"source={synthetic_small}",
                "--param", f"home={home.home}", "--param", 'dot_config={"epochs": 2}',
                "--param", 'nn_config={"epochs": 2}', "--param", "n=10", "--param", "k=5",
                "--watch", "--watch-timeout", "600", timeout=660)
    finally:
        for p in reversed(procs):
            _stop(p)

    # Both trainings ran on the gpu pool's worker, the pipeline on the cpu pool's.
    gpu_log = (tmp_path / "worker-gpu.log").read_text()
    assert gpu_log.count("train-") >= 2 or gpu_log.count("Completed") >= 2, gpu_log[-2000:]
    con = warehouse.connect_readonly(home)
    try:
        (count, pubs), = con.sql(f"select count(*), count(distinct {c.PUBLICATION_ID}) from {c.RECOMMENDATIONS}"
                                 ).fetchall()
        (recorded,), = con.sql(f"select count(*) from {c.PUBLICATIONS}").fetchall()
    finally:
        con.close()
    assert count > 0 and pubs == 1 and recorded == 1
