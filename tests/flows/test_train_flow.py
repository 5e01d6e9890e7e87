"""The training flow end to end on the synthetic data: ingest, split (then reuse it), train, evaluate, register."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.core.errors import ConfigError

from tasks.core import contract as c
from tasks.stores import split_store
from tasks.stores.split_store import SplitSpec

pytestmark = pytest.mark.slow
# Small batches and factors so a few epochs learn the 6000 synthetic ratings (the defaults suit ML-100k).
SMALL = {"epochs": 5, "batch_size": 128, "n_factors": 8, "lr": 1e-2}


@pytest.fixture
def ingested(prefect_api, home, synthetic_small):
    from flows.ingest import ingest

    ingest(source=str(synthetic_small), home=str(home.home))
    return home


def test_train_flow_splits_trains_evaluates_and_reuses_the_split(ingested):
    from flows.train import train
    from prefect.client.orchestration import get_client
    from tasks.stores import lake
    from tasks.stores import warehouse

    home = ingested
    spec = SplitSpec("leave_last_k", k=3)
    # the rating objective, so the RMSE assertion below is meaningful (the pipeline's dot default ranks)
    state = train(kind=c.MODEL_KIND_DOT, split=spec, config={**SMALL, "loss": "mse"}, home=str(home.home), k=10,
                  to_registry=False, return_state=True)
    summary = state.result()
    data_hash = lake.current(home).data_hash
    assert summary["split_id"] == split_store.split_id(spec, data_hash) and not summary["split_reused"]
    assert summary["data_hash"] == data_hash and summary["version"] is None
    assert split_store.current(home) == summary["split_id"] and split_store.stored_ids(home) == [summary["split_id"]]
    assert len(summary["history"]) == 5
    assert {"test_rmse", "test_ndcg_at_10", "valid_rmse", "valid_ndcg_at_10"} <= set(summary["metrics"])
    assert all(np.isfinite(v) for v in summary["metrics"].values())
    # the synthetic ratings have latent structure: beats predicting the training mean
    split = split_store.load(home, summary["split_id"])
    y = split.test[c.RATING].to_numpy(np.float64)
    assert summary["metrics"]["test_rmse"] < np.sqrt(np.mean((y - split.train[c.RATING].mean()) ** 2))
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).name == "train-dot_bias-mse"

    # same spec, same data: the stored split is reused, by spec and by id
    again = train(kind=c.MODEL_KIND_NN, split=spec, config={"epochs": 1}, home=str(home.home), to_registry=False)
    assert again["split_reused"] and again["split_id"] == summary["split_id"] and again["kind"] == c.MODEL_KIND_NN
    by_id = train(kind=c.MODEL_KIND_DOT, split=summary["split_id"], config={"epochs": 1}, home=str(home.home),
                  to_registry=False)
    assert by_id["split_reused"] and by_id["split_id"] == summary["split_id"]
    assert split_store.stored_ids(home) == [summary["split_id"]]

    # the split tables plug into the warehouse rebuild
    warehouse.rebuild(home, sections=(warehouse.load_sources, warehouse.split_tables))
    con = warehouse.connect_readonly(home)
    try:
        parts = dict(con.sql(f"select {c.PART}, count(*) from {c.SPLIT_RATINGS} group by all").fetchall())
        n_ratings = con.sql(f"select count(*) from {c.RATINGS}").fetchall()[0][0]
    finally:
        con.close()
    assert parts == split.counts() and sum(parts.values()) == n_ratings


def test_train_flow_registers_and_reuses_an_identical_training(ingested):
    from flows.train import train
    from tasks.registry import versions as registry
    from tasks.registry import promote

    # the rating model on its own job: promoted on rmse, held against the bias baseline fitted on the same part
    home, spec, cfg, kind = ingested, SplitSpec("random", seed=3), {"epochs": 5}, c.MODEL_KIND_NN
    first = train(kind=kind, split=spec, config=cfg, home=str(home.home))
    assert first["version"] == "1" and not first["reused"] and first["split_id"] == split_store.current(home)
    assert {"test_rmse", "valid_rmse", "promotion_floor/bias_baseline_valid_rmse"} <= set(first["metrics"])
    assert first["promotion_metric"] == "valid_rmse"
    beats = first["metrics"]["valid_rmse"] < first["metrics"]["promotion_floor/bias_baseline_valid_rmse"]
    assert first["decision"] == (promote.PROMOTED if beats else promote.REFUSED), first
    champion = "1" if beats else None
    assert registry.champion_version(home, kind) == champion

    second = train(kind=kind, split=spec, config=cfg, home=str(home.home))
    assert second["reused"] and second["version"] == "1" and second["split_reused"]
    # each flow run is found by its own id: the first trained version 1, the second reused it
    assert first["flow_run_id"] and second["flow_run_id"] and first["flow_run_id"] != second["flow_run_id"]
    for summary, reused in ((first, False), (second, True)):
        ref, found_reused = registry.training_of_flow_run(home, kind, summary["flow_run_id"])
        assert (ref.version, ref.run_id, found_reused) == ("1", first["run_id"], reused)

    forced = train(kind=kind, split=spec, config=cfg, home=str(home.home), force=True)
    assert forced["version"] == "2" and not forced["reused"]
    # the same config again: on two threads its RMSE can differ from v1's in the last digits, so it may win
    champion = registry.champion_version(home, kind)
    other = train(kind=kind, split=spec, config={**cfg, "epochs": 1}, home=str(home.home))
    assert other["version"] == "3" and not other["reused"]                   # a new config is a new training
    # one epoch is far worse than the bias baseline (0.95 against 0.89): registered and refused, saying why
    assert other["decision"] == promote.REFUSED and "does not beat the bias baseline" in other["reason"], other
    assert registry.champion_version(home, kind) == champion
    # another metric for the rating model when asked; a rating metric for the ranking model is refused
    by_mae = train(kind=kind, split=spec, config={**cfg, "epochs": 6}, home=str(home.home), promotion_metric="mae")
    assert by_mae["promotion_metric"] == "valid_mae"
    with pytest.raises(ConfigError, match="scores are no ratings"):
        train(kind=c.MODEL_KIND_DOT, split=spec, home=str(home.home), promotion_metric="rmse")


def test_train_flow_needs_an_ingest_first(prefect_api, home):
    from flows.train import train

    with pytest.raises(FileNotFoundError, match="run the ingest"):
        train(home=str(home.home))
