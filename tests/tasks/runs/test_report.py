"""Run summaries for the Prefect UI: the metrics table and the log lines, on hand-made training summaries."""

from __future__ import annotations

import pytest

from tasks.runs import report


def _model(kind: str, version: str, ndcg: float, **extra) -> dict:
    metrics = {"valid_ndcg_at_10": ndcg, "test_ndcg_at_10": ndcg - 0.01,
               "promotion_floor/popularity_valid_ndcg_at_10": 0.2}
    return {"kind": kind, "model_name": f"lensflow-{kind}", "version": version, "run_id": "0123456789abcdef",
            "decision": "promoted", "reason": "no champion yet", "promotion_metric": "valid_ndcg_at_10",
            "train_seconds": 12.345, "device": "cpu", "metrics": metrics, "mlflow_run_name": f"{kind}-mse-x",
            "mlflow_url": "http://127.0.0.1:5000/#/experiments/1/runs/0123456789abcdef", **extra}


def _rating_model(version: str, rmse: float) -> dict:
    metrics = {"valid_rmse": rmse, "test_rmse": rmse + 0.01, "valid_mae": 0.7, "test_mae": 0.71, "valid_ndcg_at_10": 0.1,
               "promotion_floor/bias_baseline_valid_rmse": 0.95}
    return {**_model("embedding_nn", version, 0.0), "promotion_metric": "valid_rmse", "metrics": metrics}


def test_metrics_table_leads_with_each_kinds_promotion_metric_beside_its_floor():
    rows = report.metrics_table([_model("dot_bias", "3", 0.45), _rating_model("1", 0.90)])
    assert list(rows[0]) == ["metric", "lensflow-dot_bias v3", "lensflow-embedding_nn v1", "floor (same data)"]
    assert rows[0] == {"metric": "valid_ndcg_at_10 (promotion)", "lensflow-dot_bias v3": 0.45,
                       "lensflow-embedding_nn v1": 0.1, "floor (same data)": "0.2 (popularity baseline)"}
    assert rows[1] == {"metric": "valid_rmse (promotion)", "lensflow-dot_bias v3": "-",
                       "lensflow-embedding_nn v1": 0.9, "floor (same data)": "0.95 (bias baseline)"}
    assert rows[2]["metric"] == "test_ndcg_at_10" and rows[2]["floor (same data)"] == "-"
    by_name = {row["metric"]: row for row in rows}
    assert by_name["test_rmse"]["lensflow-dot_bias v3"] == "-"   # the ranking model shows no rating error
    assert by_name["training time (s)"]["lensflow-dot_bias v3"] == 12.3
    assert by_name["decision"]["lensflow-embedding_nn v1"] == "promoted"
    assert "valid_recall_at_10" not in by_name  # metrics no model has are left out


def test_metrics_table_follows_another_promotion_metric():
    model = {**_rating_model("2", 0.9), "promotion_metric": "valid_mae"}
    rows = report.metrics_table([model])
    assert rows[0]["metric"] == "valid_mae (promotion)" and rows[1]["metric"] == "test_mae"
    assert report.metrics_table([{**model, "promotion_metric": ""}])[0]["metric"] == "valid_rmse (promotion)"


def test_a_publication_says_which_model_does_what_and_why_ratings_are_missing():
    published = {"models": [{"name": "lensflow-dot_bias", "version": "4", "jobs": ["ranking", "similar items"]},
                            {"name": "lensflow-embedding_nn", "version": "2", "jobs": ["rating"]}], "no_rating": ""}
    assert report.roles_lines(published) == ["ranking and similar items from lensflow-dot_bias v4",
                                             "rating from lensflow-embedding_nn v2"]
    alone = {"models": published["models"][:1], "no_rating": "no embedding_nn model to serve"}
    assert report.roles_lines(alone)[-1] == "predicted_rating is null in this publication: no embedding_nn model to serve"


def test_log_lines_say_what_happened():
    line = report.training_line(_model("dot_bias", "3", 0.45))
    assert line.startswith("lensflow-dot_bias v3: promoted — no champion yet; valid_ndcg_at_10 0.4500 "
                           "(popularity baseline 0.2000), trained in 12.3 s; MLflow run dot_bias-mse-x http://")
    published = {"publication_id": "p1", "models": [{"name": "lensflow-dot_bias", "version": "3"}],
                 "recommendation_rows": 1200, "rows_by_source": {"model": 1100, "popularity": 100},
                 "similar_item_rows": 400}
    assert report.publication_line(published) == ("published p1: 1,200 recommendations (model 1,100, popularity "
                                                   "100) and 400 similar items from lensflow-dot_bias v3")
    assert report.publication_line({**published, "skipped": True}).endswith("on this data: kept")
    ingested = {"data_hash": "abcdef0123456789", "noop": True, "row_counts": {"ratings": 100000}, "source": "x"}
    assert report.ingest_line(ingested) == "data abcdef012345 unchanged: ingest skipped (live: ratings 100,000)"


def test_a_reason_that_names_the_metric_is_not_followed_by_it_again():
    model = _model("dot_bias", "1", 0.2072, reason="no champion yet; first version with valid_ndcg_at_10=0.2072")
    line = report.training_line(model)
    assert line.count("valid_ndcg_at_10") == 1 and "(popularity baseline 0.2000)" not in line, line
    assert "; popularity baseline 0.2000, trained in 12.3 s; MLflow run" in line


def test_artifacts_link_each_model_to_its_mlflow_run_and_version():
    url = "http://127.0.0.1:5055/#/models/lensflow-dot_bias/versions/3"
    model = _model("dot_bias", "3", 0.45, version_url=url)
    text = report.training_markdown(model)
    assert f"[lensflow-dot_bias v3]({url})" in text
    assert "[dot_bias-mse-x](http://127.0.0.1:5000/#/experiments/1/runs/0123456789abcdef)" in text
    model.update(split_id="random-1", reused=False)
    page = report.summary_markdown({"ingest": {"data_hash": "abc", "noop": False, "row_counts": {"ratings": 9}},
                                    "models": [model], "publication": {"skipped": True, "publication_id": "p1"},
                                    "warehouse": "w"})
    assert f"[lensflow-dot_bias v3]({url})" in page and "(http://127.0.0.1:5000/#/experiments/1/runs/" in page


def test_mlflow_links_open_the_ui_the_operator_runs(monkeypatch):
    from tasks.core import settings
    from tasks.core.errors import ConfigError
    from tasks.registry import mlflow_store

    monkeypatch.delenv(settings.MLFLOW_UI_ENV, raising=False)
    assert mlflow_store.run_url("sqlite:////h/mlflow.db", "1", "r1") == "http://127.0.0.1:5000/#/experiments/1/runs/r1"
    assert settings.mlflow_ui_port() == 5000
    assert settings.mlflow_ui_url("http://mlflow-host:5000/") == "http://mlflow-host:5000"   # a server serves its UI
    monkeypatch.setenv(settings.MLFLOW_UI_ENV, "http://127.0.0.1:5055/")
    assert mlflow_store.version_url("http://mlflow-host:5000", "lensflow-dot_bias", "3") == \
        "http://127.0.0.1:5055/#/models/lensflow-dot_bias/versions/3"
    assert settings.mlflow_ui_port() == 5055                  # `lensflow mlflow-ui` listens where links point
    monkeypatch.setenv(settings.MLFLOW_UI_ENV, "127.0.0.1:5055")
    with pytest.raises(ConfigError, match="http"):
        settings.mlflow_ui_url()
