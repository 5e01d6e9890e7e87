"""The whole pipeline on synthetic data under the Prefect test harness: first run, cached rerun, data change."""

from __future__ import annotations

import json
import shutil

import pytest

from tasks.core import contract as c
from tasks.stores import publications as store
from tasks.stores import lake
from tasks.registry import versions as registry
from tasks.registry import promote
from tasks.registry import trainings
from tasks.stores import split_store
from tasks.sources import synthetic
from tasks.stores import warehouse
from tasks.stores.split_store import SplitSpec

# Small, quick configs: the test is about the wiring, bench/ is about model quality.
FAST = {"epochs": 2}
# On data where users pick items by taste, five epochs of the ranking dot model beat plain popularity on
# validation NDCG@10 (0.206 vs 0.187). After two epochs the rating NN's validation RMSE (0.906) is worse than the
# bias baseline's (0.833), so the floor refuses it; on the changed data of the third run twelve epochs beat it
# (0.831 vs 0.838, on one thread or two; six epochs 0.841 and ten 0.834 are too close to call).
BEATS_POPULARITY = {"epochs": 5}
BEATS_BIAS_BASELINE = {"epochs": 12}
TASTE = 1.5


@pytest.fixture(scope="module")
def synthetic_taste(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("taste") / "ml-taste", n_users=120, n_items=200,
                              n_ratings=6000, seed=7, taste=TASTE)


def _run(home, source, dot_config=FAST, nn_config=FAST, **kw):
    from flows.pipeline import pipeline

    return pipeline(source=str(source), home=str(home.home), split=SplitSpec(seed=3), dot_config=dot_config,
                    nn_config=nn_config, n=10, k=5, **kw)


def _predicted_ratings(home) -> tuple[int, int, float, float]:
    """(rows, rows with a predicted rating, lowest, highest) of the live recommendations."""
    con = warehouse.connect_readonly(home)
    try:
        return con.sql(f"select count(*), count({c.PREDICTED_RATING}), min({c.PREDICTED_RATING}), "
                       f"max({c.PREDICTED_RATING}) from {c.USER_RECOMMENDATIONS}").fetchall()[0]
    finally:
        con.close()


def _latest_pipeline_story() -> dict:
    """The newest pipeline flow run as the Prefect UI shows it, read back from the API: its run and subflow
    runs, every task run name, the log lines per flow run name, and the table artifacts per flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter,
                                                FlowRunFilterName, FlowRunFilterParentFlowRunId, LogFilter,
                                                LogFilterFlowRunId, TaskRunFilter, TaskRunFilterFlowRunId)
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # logs reach the API in batches
    with get_client(sync_client=True) as client:
        (root,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="pipeline-")),
                                        sort=FlowRunSort.START_TIME_DESC, limit=1)
        subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[root.id])))
        runs = [root, *subflows]
        ids = [r.id for r in runs]
        tasks = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)),
                                      limit=200)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    names = {r.id: r.name for r in runs}
    lines: dict[str, list[str]] = {}
    for log in logs:
        lines.setdefault(names[log.flow_run_id], []).append(log.message)
    return {"root": root, "subflows": {r.name: r for r in subflows}, "tasks": [t.name for t in tasks],
            "input_types": {(t.name, i.input_type) for t in tasks for found in t.task_inputs.values() for i in found},
            "logs": {name: "\n".join(found) for name, found in lines.items()},
            "tables": {(names[a.flow_run_id], a.key): json.loads(a.data) if isinstance(a.data, str) else a.data
                       for a in artifacts if a.type == "table"}}


def _assert_the_story_is_told(story: dict, source, ratings: int) -> str:
    """Run names say what each run is, logs say what happened, the metrics table leads with promotion.

    Returns the publish subflow's name.
    """
    import re
    from datetime import timezone

    # Prefect's own names end in a counter or a random suffix ('ingest-0', 'acquire-94d', 'train-<uuid>')
    default_name = re.compile(r"-(\d+|[0-9a-f]{3}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
    root = story["root"]
    day = f"{root.start_time.astimezone(timezone.utc):%Y-%m-%d}"
    assert root.name == f"pipeline-{day}-random-dot_bias+embedding_nn-local"
    (publish_run,) = [name for name in story["subflows"] if name.startswith("publish-")]
    assert set(story["subflows"]) == {f"ingest-{source.name}", "train-dot_bias-softmax", "train-embedding_nn-mse",
                                      publish_run}
    assert not [name for name in story["tasks"] if default_name.search(name)], story["tasks"]
    # Prefect's V1 UI lists no task run of a flow run when one has a `flow_run` input (a subflow's result)
    assert {kind for _, kind in story["input_types"]} <= {"task_run", "parameter", "constant"}, story["input_types"]
    assert ("split-random-seed3", "task_run") in story["input_types"]   # the split still follows the ingest
    assert {f"acquire-{source.name}", "read-ratings", "train-dot_bias", "train-dot_bias-softmax",
            "fit-dot_bias-softmax", "fit-embedding_nn-mse"} <= set(story["tasks"])
    logs = story["logs"]
    assert f"ratings {ratings:,}" in logs[f"ingest-{source.name}"]
    for text in (f"ratings {ratings:,}", "lensflow-dot_bias v", "lensflow-embedding_nn v", "MLflow run",
                 "#/experiments/"):
        assert text in logs[root.name], text
    table = story["tables"][(root.name, "model-metrics")]
    assert [row["metric"] for row in table[:2]] == ["valid_ndcg_at_10 (promotion)", "valid_rmse (promotion)"]
    assert list(table[0])[0] == "metric" and list(table[0])[-1] == "floor (same data)"
    assert table[0]["floor (same data)"].endswith("(popularity baseline)")
    assert table[1]["floor (same data)"].endswith("(bias baseline)")
    assert {"lensflow-dot_bias v1", "lensflow-embedding_nn v1"} <= set(table[0])
    assert not any(row["metric"].endswith("rmse") and row["lensflow-dot_bias v1"] != "-" for row in table)
    assert "training time (s)" in [row["metric"] for row in table]
    # each train flow run writes the same table for its one model, as a standalone `lensflow train` does
    assert story["tables"][("train-dot_bias-softmax", "training-dot-bias-metrics")][0]["metric"] == \
        "valid_ndcg_at_10 (promotion)"
    return publish_run


def _live_rows(home) -> tuple[str, set[str], int]:
    con = warehouse.connect_readonly(home)
    try:
        live = con.sql(f"select distinct {c.PUBLICATION_ID} from {c.RECOMMENDATIONS}").fetchall()
        recorded = con.sql(f"select {c.PUBLICATION_ID}, {c.RECOMMENDATION_ROWS} from {c.PUBLICATIONS}").fetchall()
        n = con.sql(f"select count(*) from {c.RECOMMENDATIONS}").fetchall()[0][0]
    finally:
        con.close()
    ids = {row[0] for row in live}
    assert len(ids) == 1, f"recommendations mix publications: {ids}"
    (pid,) = ids
    assert (pid, n) in set(recorded), "the live rows must match their lineage row in publications"
    return pid, {row[0] for row in recorded}, n


@pytest.mark.slow
def test_pipeline_runs_then_skips_unchanged_work_then_redoes_changed(prefect_api, home, synthetic_taste, tmp_path):
    first = _run(home, synthetic_taste, dot_config=BEATS_POPULARITY)

    assert first["ingest"]["noop"] is False
    assert [m["kind"] for m in first["models"]] == list(c.MODEL_KINDS)
    assert all(not m["reused"] for m in first["models"])
    dot, nn = first["models"]
    assert dot["decision"] == promote.PROMOTED, dot
    assert "test_rmse" not in dot["metrics"] and "test_ndcg_at_10" in dot["metrics"]   # its job: ranking
    # the two-epoch NN does not beat the bias baseline's RMSE: registered, refused with the reason, never champion
    assert nn["decision"] == promote.REFUSED and "valid_rmse" in nn["reason"] and "bias baseline" in nn["reason"], nn
    assert registry.champion_version(home, c.MODEL_KIND_NN) is None
    assert "promotion_floor/bias_baseline_valid_rmse" in nn["metrics"]
    # so nothing rates the published rows: the column is null, the run says why, the publication is live
    assert "no embedding_nn model" in first["publication"]["no_rating"]
    assert _predicted_ratings(home)[1] == 0

    # evaluate, then serve: the champion's config refitted on every rating, its own version under `serving`
    (fit,) = first["serving"]
    n_ratings = len(lake.read(home, c.RATINGS))
    assert fit["kind"] == c.MODEL_KIND_DOT and not fit["reused"] and fit["rows"] == n_ratings
    assert fit["evaluated_version"] == dot["version"] != fit["version"]
    serving = registry.resolve(home, c.MODEL_KIND_DOT, c.ALIAS_SERVING)
    assert serving.version == fit["version"] and serving.data_hash == first["ingest"]["data_hash"]
    tags = registry.version_tags(home, c.MODEL_KIND_DOT, serving.version)
    assert tags[trainings.TAG_SERVING_EVALUATED] == dot["version"] and tags[trainings.TAG_SERVING_ROWS] == str(n_ratings)
    assert registry.champion_version(home, c.MODEL_KIND_DOT) == dot["version"]   # champion stays the evaluated one
    fitted, _ = registry.load_for_scoring(home, c.MODEL_KIND_DOT, c.ALIAS_SERVING)
    assert set(fitted.user_ids) == set(lake.read(home, c.RATINGS)[c.USER_ID])    # every rating's user is known

    publication = first["publication"]
    assert publication["skipped"] is False
    pid, recorded, n_rows = _live_rows(home)
    assert pid == publication["publication_id"] == store.current(home)
    assert n_rows == publication["recommendation_rows"] > 0
    # the Prefect UI tells the story: names, logs, the metrics artifact; MLflow runs tag their flow run
    import re
    from pathlib import Path

    from tasks.registry import tracking
    from tasks.registry import mlflow_store

    story = _latest_pipeline_story()
    publish_run = _assert_the_story_is_told(story, Path(first["ingest"]["source"]),
                                            first["ingest"]["row_counts"][c.RATINGS])
    assert re.search(r"dot_bias epoch 1/\d+: train_softmax_ce [\d.]+, valid_softmax_ce",
                     story["logs"]["train-dot_bias-softmax"])
    assert re.search(r"embedding_nn epoch 1/\d+: train_mse [\d.]+, valid_mse", story["logs"]["train-embedding_nn-mse"])
    assert "lensflow-dot_bias v1: promoted — no champion yet" in story["logs"]["train-dot_bias-softmax"]
    assert "predicted_rating is null in this publication" in story["logs"][story["root"].name]
    assert f"published {pid}: {n_rows:,} recommendations" in story["logs"][publish_run]
    cl = mlflow_store.client(home)
    # the serving fit's run names the pipeline's flow run as a training's names its train flow run
    serving_run = cl.get_run(serving.run_id)
    assert serving_run.data.tags[tracking.TAG_FLOW_RUN_ID] == str(story["root"].id)
    for m in first["models"]:
        run = cl.get_run(m["run_id"])
        assert run.data.tags[tracking.TAG_FLOW_RUN_ID] == str(story["subflows"][f"train-{m['kind']}-{m['loss']}"].id)
        assert f"{tracking.CURVES}train_{tracking.loss_metric(m['loss'])}" in run.data.metrics
    # every published row traces to a registered version, the split and the data snapshot
    record = json.loads((home.publications / pid / store.RECORD_FILE).read_text())
    assert record[c.DATA_HASH] == first["ingest"]["data_hash"]
    assert record[c.SPLIT_ID] == first["models"][0]["split_id"]
    # the split was made once, before the trainings, which loaded it by id instead of each making it
    assert first["split"]["reused"] is False and first["split"][c.PART_TRAIN] > 0
    assert {m["split_id"] for m in first["models"]} == {first["split"][c.SPLIT_ID]}
    assert all(m["split_reused"] for m in first["models"]), first["models"]
    assert split_store.stored_ids(home) == [first["split"][c.SPLIT_ID]]
    served = {(m["name"], m["version"]) for m in publication["models"]}
    assert (record[c.MODEL_NAME], record[c.MODEL_VERSION]) in served
    # the publication names the serving fit and the evaluated version that justified it
    assert (record[c.MODEL_VERSION], record[c.EVALUATED_MODEL_VERSION]) == (fit["version"], dot["version"])
    assert record[c.SERVED_ALIAS] == c.ALIAS_SERVING
    assert record[c.SIMILARITY_EVALUATED_MODEL_VERSION] == dot["version"]
    con = warehouse.connect_readonly(home)
    try:
        row = con.sql(f"select {c.MODEL_VERSION}, {c.EVALUATED_MODEL_VERSION}, {c.SERVED_ALIAS} from {c.PUBLICATIONS} "
                      f"where {c.PUBLICATION_ID} = '{pid}'").fetchall()[0]
    finally:
        con.close()
    assert row == (fit["version"], dot["version"], c.ALIAS_SERVING)

    # Unchanged data and configs: every step finds its work done and says so.
    second = _run(home, synthetic_taste, dot_config=BEATS_POPULARITY)
    assert second["ingest"]["noop"] is True
    assert all(m["reused"] and m["split_reused"] for m in second["models"]), second["models"]
    assert second["split"] == {c.SPLIT_ID: first["split"][c.SPLIT_ID], "reused": True}
    assert [(f["version"], f["reused"]) for f in second["serving"]] == [(fit["version"], True)]
    assert [m["version"] for m in second["models"]] == [m["version"] for m in first["models"]]
    assert second["publication"] == {**second["publication"], "skipped": True, "publication_id": pid}
    assert _live_rows(home)[0] == pid
    # a reused training says where it was decided, not the stale "no champion yet"
    assert all(m["decision"] == "reused" and m["reason"].startswith(f"decided in run train-{m['kind']}-")
               and "no champion yet" not in m["reason"] for m in second["models"]), second["models"]
    assert f"publication {pid} already serves" in _latest_pipeline_story()["logs"][publish_run]
    # `lensflow run` asks the stores the same questions before starting Prefect: the same answer
    from tasks.runs import rerun

    configs = {c.MODEL_KIND_DOT: BEATS_POPULARITY, c.MODEL_KIND_NN: FAST}
    same = rerun.unchanged(home, str(synthetic_taste), SplitSpec(seed=3), configs)
    assert same == {"data_hash": first["ingest"]["data_hash"], "split_id": first["models"][0]["split_id"],
                    "publication_id": pid, "trained": {m["kind"]: m["version"] for m in first["models"]}}
    assert rerun.unchanged(home, str(synthetic_taste), SplitSpec(seed=4), configs) is None
    assert rerun.unchanged(home, str(synthetic_taste), SplitSpec(seed=3), {**configs, c.MODEL_KIND_DOT: {"epochs": 3}}) \
        is None

    # Changed data, and a rating NN that beats the bias baseline: retrained and republished, now with
    # predicted ratings from the NN's serving fit; the old publication kept in history.
    changed = tmp_path / "changed"
    shutil.copytree(synthetic_taste, changed)
    synthetic.generate(changed, n_users=120, n_items=200, n_ratings=6500, seed=8, taste=TASTE)
    assert rerun.unchanged(home, str(changed), SplitSpec(seed=3), configs) is None
    third = _run(home, changed, dot_config=BEATS_POPULARITY, nn_config=BEATS_BIAS_BASELINE)
    assert third["ingest"]["noop"] is False
    assert third["ingest"]["data_hash"] != first["ingest"]["data_hash"]
    assert all(not m["reused"] for m in third["models"])
    assert third["models"][0]["split_id"] != first["models"][0]["split_id"]
    new_pid, history, n_rows = _live_rows(home)
    assert new_pid == third["publication"]["publication_id"] != pid
    assert {pid, new_pid} <= history
    # both kinds are champions on their own jobs, and each gets its serving fit on every rating
    dot3, nn3 = third["models"]
    assert nn3["decision"] == promote.PROMOTED and "valid_rmse" in nn3["reason"], nn3
    assert registry.champion_version(home, c.MODEL_KIND_NN) == nn3["version"]
    assert [(f["kind"], f["reused"]) for f in third["serving"]] == [(c.MODEL_KIND_DOT, False), (c.MODEL_KIND_NN, False)]
    nn_fit = third["serving"][1]
    # every published row carries what the user would rate it, from the NN's serving fit (named in the lineage)
    rows, rated, low, high = _predicted_ratings(home)
    assert rows == rated == n_rows and 1 <= low <= high <= 5
    record = json.loads((home.publications / new_pid / store.RECORD_FILE).read_text())
    assert (record[c.RATING_MODEL_NAME], record[c.RATING_MODEL_VERSION], record[c.RATING_EVALUATED_MODEL_VERSION]) \
        == (c.registered_model_name(c.MODEL_KIND_NN), nn_fit["version"], nn3["version"])
    assert third["publication"]["no_rating"] == ""


def test_pipeline_failure_keeps_last_good_publication(prefect_api, home, synthetic_small, tmp_path):
    _run(home, synthetic_small)
    before = _live_rows(home)
    build = warehouse.build_id(home)

    broken = tmp_path / "broken"
    shutil.copytree(synthetic_small, broken)
    with open(broken / "u.data", "a") as f:
        f.write("1\t1\t9\t881250949\n")  # rating out of range (and a duplicate pair)
    with pytest.raises(Exception, match="u.data line"):
        _run(home, broken)

    assert _live_rows(home) == before
    assert warehouse.build_id(home) == build
