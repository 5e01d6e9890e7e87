"""The whole pipeline on synthetic data under the Prefect test harness: first run, cached rerun, data change."""

from __future__ import annotations

import json
import shutil

import pytest

from tasks import contract as c
from tasks import publications as store
from tasks import lake, registry, synthetic, warehouse
from tasks.split import SplitSpec

# Small, quick configs: the test is about the wiring, bench/ is about model quality.
FAST = {"epochs": 2}
# On data where users pick items by taste, five epochs of the ranking dot model beat plain popularity on
# validation NDCG@10 (0.206 vs 0.187); the two-epoch MSE NN does not (0.140), so the floor refuses it.
BEATS_POPULARITY = {"epochs": 5}
TASTE = 1.5


@pytest.fixture(scope="module")
def synthetic_taste(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("taste") / "ml-taste", n_users=120, n_items=200,
                              n_ratings=6000, seed=7, taste=TASTE)


def _run(home, source, dot_config=FAST, **kw):
    from flows.pipeline import pipeline

    return pipeline(source=str(source), home=str(home.home), split=SplitSpec(seed=3), dot_config=dot_config,
                    nn_config=FAST, n=10, k=5, **kw)


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
    assert dot["decision"] == registry.PROMOTED, dot
    # the NN does not beat popularity: registered, refused with the reason, never champion
    assert nn["decision"] == registry.REFUSED and "popularity baseline" in nn["reason"], nn
    assert registry.champion_version(home, c.MODEL_KIND_NN) is None

    # evaluate, then serve: the champion's config refitted on every rating, its own version under `serving`
    (fit,) = first["serving"]
    n_ratings = len(lake.read(home, c.RATINGS))
    assert fit["kind"] == c.MODEL_KIND_DOT and not fit["reused"] and fit["rows"] == n_ratings
    assert fit["evaluated_version"] == dot["version"] != fit["version"]
    serving = registry.resolve(home, c.MODEL_KIND_DOT, c.ALIAS_SERVING)
    assert serving.version == fit["version"] and serving.data_hash == first["ingest"]["data_hash"]
    tags = registry.version_tags(home, c.MODEL_KIND_DOT, serving.version)
    assert tags[registry.TAG_SERVING_EVALUATED] == dot["version"] and tags[registry.TAG_SERVING_ROWS] == str(n_ratings)
    assert registry.champion_version(home, c.MODEL_KIND_DOT) == dot["version"]   # champion stays the evaluated one
    fitted, _ = registry.load_for_scoring(home, c.MODEL_KIND_DOT, c.ALIAS_SERVING)
    assert set(fitted.user_ids) == set(lake.read(home, c.RATINGS)[c.USER_ID])    # every rating's user is known

    publication = first["publication"]
    assert publication["skipped"] is False
    pid, recorded, n_rows = _live_rows(home)
    assert pid == publication["publication_id"] == store.current(home)
    assert n_rows == publication["recommendation_rows"] > 0
    # every published row traces to a registered version, the split and the data snapshot
    record = json.loads((home.publications / pid / store.RECORD_FILE).read_text())
    assert record[c.DATA_HASH] == first["ingest"]["data_hash"]
    assert record[c.SPLIT_ID] == first["models"][0]["split_id"]
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
    assert [(f["version"], f["reused"]) for f in second["serving"]] == [(fit["version"], True)]
    assert [m["version"] for m in second["models"]] == [m["version"] for m in first["models"]]
    assert second["publication"] == {**second["publication"], "skipped": True, "publication_id": pid}
    assert _live_rows(home)[0] == pid
    # `lensflow run` asks the stores the same questions before starting Prefect: the same answer
    from tasks import rerun
    from tasks.evaluate import PROMOTION_METRIC

    configs = {c.MODEL_KIND_DOT: BEATS_POPULARITY, c.MODEL_KIND_NN: FAST}
    same = rerun.unchanged(home, str(synthetic_taste), SplitSpec(seed=3), configs, PROMOTION_METRIC)
    assert same == {"data_hash": first["ingest"]["data_hash"], "split_id": first["models"][0]["split_id"],
                    "publication_id": pid, "trained": {m["kind"]: m["version"] for m in first["models"]}}
    assert rerun.unchanged(home, str(synthetic_taste), SplitSpec(seed=4), configs, PROMOTION_METRIC) is None
    assert rerun.unchanged(home, str(synthetic_taste), SplitSpec(seed=3), {**configs, c.MODEL_KIND_DOT: {"epochs": 3}},
                           PROMOTION_METRIC) is None

    # Changed data: new hash, new split, retrained and republished; old publication kept in history.
    changed = tmp_path / "changed"
    shutil.copytree(synthetic_taste, changed)
    synthetic.generate(changed, n_users=120, n_items=200, n_ratings=6500, seed=8, taste=TASTE)
    assert rerun.unchanged(home, str(changed), SplitSpec(seed=3), configs, PROMOTION_METRIC) is None
    third = _run(home, changed, dot_config=BEATS_POPULARITY)
    assert third["ingest"]["noop"] is False
    assert third["ingest"]["data_hash"] != first["ingest"]["data_hash"]
    assert all(not m["reused"] for m in third["models"])
    assert third["models"][0]["split_id"] != first["models"][0]["split_id"]
    new_pid, history, _ = _live_rows(home)
    assert new_pid == third["publication"]["publication_id"] != pid
    assert {pid, new_pid} <= history
    assert [f["reused"] for f in third["serving"]] == [False]   # new data: a new serving fit


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
