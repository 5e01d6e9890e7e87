"""A real `mlflow server` on the data home's store: log, register, promote and load through it."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest

from models.recipes import for_kind
from tasks.core import contract as c
from tasks.registry import versions as r
from tasks.registry import promote
from tasks.registry import tracking as t
from tasks.registry import mlflow_store
from tests.conftest import free_port, wait_healthy
from tests.tasks.registry.test_tracking import data, empty_mlflow_db, fit, rmse_on  # noqa: F401  (fixtures)

KIND = c.MODEL_KIND_NN


@pytest.fixture
def server(home, empty_mlflow_db, monkeypatch):
    """`lensflow mlflow-ui`'s command on a fresh store and a free port; yields the URL, stops it after."""
    home.mlflow_db.parent.mkdir(parents=True)
    shutil.copyfile(empty_mlflow_db, home.mlflow_db)  # migrated already: the server starts faster
    port = free_port()
    proc = subprocess.Popen(r.server_command(home, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/health", proc, timeout=120)
        monkeypatch.setenv(mlflow_store.ENV_TRACKING_URI, url)  # as a team would: everyone points at the server
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_log_register_promote_and_load_through_a_server(server, home, data):
    train, valid = data
    assert home.mlflow_tracking_uri == server
    rec = fit(train, valid, for_kind(KIND, n_factors=4, layers=(8,), epochs=2, time_features=False))   # no times here
    run_id = t.log_training(home, rec, rec.config, {"rmse": rmse_on(rec, valid)}, rec.history,
                            t.Lineage(KIND, "split-s", "hash-s"), train=train)
    version = r.register(home, run_id, KIND)
    assert promote.promote_if_better(home, KIND, version, "rmse").promoted

    # the server holds it all: the same questions asked over HTTP
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow/registered-models/alias?"
                                f"name={c.registered_model_name(KIND)}&alias={c.ALIAS_CHAMPION}") as resp:
        assert f'"version": "{version}"' in resp.read().decode().replace('":"', '": "')
    cl = mlflow_store.client(home)
    assert cl.get_run(run_id).data.metrics["rmse"] == pytest.approx(rmse_on(rec, valid))
    assert {"plots/loss_curves.png", "plots/item_embeddings_pca.png"} <= {
        a.path for a in cl.list_artifacts(run_id, "plots")}

    loaded, ref = r.load_for_scoring(home, KIND)
    assert (ref.version, ref.run_id, ref.split_id, ref.data_hash) == (version, run_id, "split-s", "hash-s")
    u, i = valid[c.USER_ID].to_numpy(), valid[c.ITEM_ID].to_numpy()
    assert (loaded.predict(u, i) == rec.predict(u, i)).all()
