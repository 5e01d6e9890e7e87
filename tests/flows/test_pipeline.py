"""The whole pipeline on synthetic data under the Prefect test harness: first run, cached rerun, data change."""

from __future__ import annotations

import json
import shutil

import pytest

from tasks import contract as c
from tasks import publications as store
from tasks import registry, synthetic, warehouse
from tasks.split import SplitSpec

# Small, quick configs: the test is about the wiring, bench/ is about model quality.
FAST = {"epochs": 2}


def _run(home, source, **kw):
    from flows.pipeline import pipeline

    return pipeline(source=str(source), home=str(home.home), split=SplitSpec(seed=3), dot_config=FAST,
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
def test_pipeline_runs_then_skips_unchanged_work_then_redoes_changed(prefect_api, home, synthetic_small, tmp_path):
    first = _run(home, synthetic_small)

    assert first["ingest"]["noop"] is False
    assert [m["kind"] for m in first["models"]] == list(c.MODEL_KINDS)
    assert all(not m["reused"] for m in first["models"])
    assert all(m["decision"] == registry.PROMOTED for m in first["models"]), first["models"]
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

    # Unchanged data and configs: every step finds its work done and says so.
    second = _run(home, synthetic_small)
    assert second["ingest"]["noop"] is True
    assert all(m["reused"] and m["split_reused"] for m in second["models"]), second["models"]
    assert [m["version"] for m in second["models"]] == [m["version"] for m in first["models"]]
    assert second["publication"] == {**second["publication"], "skipped": True, "publication_id": pid}
    assert _live_rows(home)[0] == pid
    # `lensflow run` asks the stores the same questions before starting Prefect: the same answer
    from tasks import rerun
    from tasks.evaluate import PROMOTION_METRIC

    configs = {kind: FAST for kind in c.MODEL_KINDS}
    same = rerun.unchanged(home, str(synthetic_small), SplitSpec(seed=3), configs, PROMOTION_METRIC)
    assert same == {"data_hash": first["ingest"]["data_hash"], "split_id": first["models"][0]["split_id"],
                    "publication_id": pid, "trained": {m["kind"]: m["version"] for m in first["models"]}}
    assert rerun.unchanged(home, str(synthetic_small), SplitSpec(seed=4), configs, PROMOTION_METRIC) is None
    assert rerun.unchanged(home, str(synthetic_small), SplitSpec(seed=3), {**configs, c.MODEL_KIND_DOT: {"epochs": 3}},
                           PROMOTION_METRIC) is None

    # Changed data: new hash, new split, retrained and republished; old publication kept in history.
    changed = tmp_path / "changed"
    shutil.copytree(synthetic_small, changed)
    synthetic.generate(changed, n_users=120, n_items=200, n_ratings=6500, seed=8)
    assert rerun.unchanged(home, str(changed), SplitSpec(seed=3), configs, PROMOTION_METRIC) is None
    third = _run(home, changed)
    assert third["ingest"]["noop"] is False
    assert third["ingest"]["data_hash"] != first["ingest"]["data_hash"]
    assert all(not m["reused"] for m in third["models"])
    assert third["models"][0]["split_id"] != first["models"][0]["split_id"]
    new_pid, history, _ = _live_rows(home)
    assert new_pid == third["publication"]["publication_id"] != pid
    assert {pid, new_pid} <= history


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
