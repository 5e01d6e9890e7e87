"""Run summaries for the Prefect UI: the metrics table and the log lines, on hand-made training summaries."""

from __future__ import annotations

from tasks import report


def _model(kind: str, version: str, ndcg: float, **extra) -> dict:
    metrics = {"valid_ndcg_at_10": ndcg, "test_ndcg_at_10": ndcg - 0.01, "test_rmse": 0.95, "valid_rmse": 0.94,
               "popularity_valid_ndcg_at_10": 0.2}
    return {"kind": kind, "model_name": f"lensflow-{kind}", "version": version, "run_id": "0123456789abcdef",
            "decision": "promoted", "reason": "no champion yet", "promotion_metric": "valid_ndcg_at_10",
            "train_seconds": 12.345, "device": "cpu", "metrics": metrics, "mlflow_run_name": f"{kind}-mse-x",
            "mlflow_url": "http://127.0.0.1:5000/#/experiments/1/runs/0123456789abcdef", **extra}


def test_metrics_table_leads_with_the_promotion_metric_models_as_columns_beside_popularity():
    rows = report.metrics_table([_model("dot_bias", "3", 0.45), _model("embedding_nn", "1", 0.30)])
    assert list(rows[0]) == ["metric", "lensflow-dot_bias v3", "lensflow-embedding_nn v1", "popularity baseline"]
    assert rows[0] == {"metric": "valid_ndcg_at_10 (promotion)", "lensflow-dot_bias v3": 0.45,
                       "lensflow-embedding_nn v1": 0.3, "popularity baseline": 0.2}
    assert rows[1]["metric"] == "test_ndcg_at_10" and rows[1]["popularity baseline"] == "-"
    by_name = {row["metric"]: row for row in rows}
    assert by_name["training time (s)"]["lensflow-dot_bias v3"] == 12.3
    assert by_name["decision"]["lensflow-embedding_nn v1"] == "promoted"
    assert "valid_recall_at_10" not in by_name  # metrics no model has are left out


def test_metrics_table_follows_another_promotion_metric():
    model = _model("dot_bias", "2", 0.4, promotion_metric="valid_rmse")
    rows = report.metrics_table([model], metric="rmse")
    assert rows[0]["metric"] == "valid_rmse (promotion)" and rows[1]["metric"] == "test_rmse"
    assert report.metrics_table([{**model, "promotion_metric": ""}], metric="rmse")[0]["metric"] == \
        "valid_rmse (promotion)"


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
