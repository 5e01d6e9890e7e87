"""Publication health: figures of hand-made tables, narrowing flags, the history files and the SQL on them."""

from __future__ import annotations

import math
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from tasks.core import contract as c
from tasks.publishing import publication_metrics as pm
from tasks.publishing import narrowing
from tasks.stores import metrics_history
from tasks.core import sql

SRC_MODEL, SRC_SIDE, SRC_POP = c.SOURCE_MODEL, c.SOURCE_SIDE_INFO, c.SOURCE_POPULARITY


# --- hand-made publication ----------------------------------------------------------------------------
# Catalogue: items 1..20. Users 1..4; user 4 has no list.
#   user 1 (model):      ranks 1..10 -> items 1..10, rank 11 -> item 11
#   user 2 (model):      ranks 1..10 -> items 1..9 and 12, rank 11 -> item 13
#   user 3 (popularity): ranks 1..2  -> items 1, 2
# Top-10 exposure: item 1 ×3, item 2 ×3, items 3..9 ×2, items 10 and 12 ×1: 22 slots, 11 distinct items.
# Rating counts: item i (1..10) has 11 − i ratings, item 13 has 5, the rest none: 60 ratings.
def _recs() -> pd.DataFrame:
    rows = [(1, r, i, SRC_MODEL) for r, i in enumerate(list(range(1, 11)) + [11], 1)]
    rows += [(2, r, i, SRC_MODEL) for r, i in enumerate(list(range(1, 10)) + [12, 13], 1)]
    rows += [(3, 1, 1, SRC_POP), (3, 2, 2, SRC_POP)]
    df = pd.DataFrame(rows, columns=[c.USER_ID, c.RANK, c.ITEM_ID, c.SOURCE])
    df[c.SCORE] = -df[c.RANK].astype(float)
    return df


def _sims() -> pd.DataFrame:
    # item 1 -> 2, 3; item 2 -> 1, 3; item 3 -> 1. Neighbour exposure: item 1 ×2, item 2 ×1, item 3 ×2.
    rows = [(1, 1, 2), (1, 2, 3), (2, 1, 1), (2, 2, 3), (3, 1, 1)]
    df = pd.DataFrame(rows, columns=[c.ITEM_ID, c.RANK, c.SIMILAR_ITEM_ID])
    df[c.SIMILARITY] = 0.5
    return df


def _ratings() -> pd.DataFrame:
    pairs = [(100 + k, i) for i in range(1, 11) for k in range(11 - i)] + [(200 + k, 13) for k in range(5)]
    df = pd.DataFrame(pairs, columns=[c.USER_ID, c.ITEM_ID])
    df[c.RATING] = 4
    return df


def _movies() -> pd.DataFrame:
    return pd.DataFrame({c.ITEM_ID: np.arange(1, 21)})


def _users() -> pd.DataFrame:
    return pd.DataFrame({c.USER_ID: [1, 2, 3, 4]})


def _measure(**kw) -> dict:
    return pm.measure(_recs(), _sims(), _ratings(), _movies(), _users(), **kw)


def test_measure_hand_made_publication():
    m = _measure()
    # Gini of top-10 exposure, counts sorted ascending over 20 items: 9 zeros, 1, 1, 2 ×7, 3, 3 (Σ 22);
    # Σ (2i − 21)·x_i = (−1 + 1)·1 + (3+5+7+9+11+13+15)·2 + (17 + 19)·3 = 234, G = 234 / (20·22).
    # Percentiles (mid-rank) of the counts 0 ×9, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10 over 20 items:
    # 10 -> 0.975, 9 -> 0.925, 8 -> 0.875, 7 -> 0.825, 6 -> 0.775, 5 -> 0.70, 4 -> 0.625, 3 -> 0.575,
    # 2 -> 0.525, 1 -> 0.475, 0 -> 0.225; over the 22 top-10 slots they sum to 16.2.
    # Top-10 slot counts sorted: 0 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 9 10 10 10: sum 128, median 6.
    # Similar items: neighbour exposure sorted 0 ×17, 1, 2, 2 (Σ 5): Σ (2i − 21)·x_i = 15 + 34 + 38 = 87.
    expected = {
        pm.N_USERS: 4, pm.N_ITEMS: 20, pm.LIST_LENGTH: 11,
        pm.USERS_WITH_RECOMMENDATIONS_SHARE: 3 / 4,
        pm.FALLBACK_SHARE: 1 / 3, pm.SIDE_INFO_SHARE: 0.0, pm.POPULARITY_FALLBACK_SHARE: 1 / 3,
        pm.COVERAGE_AT_10: 11 / 20, pm.COVERAGE_AT_N: 13 / 20,
        pm.GINI_AT_10: 234 / 440, pm.TOP1PCT_SHARE_AT_10: 3 / 22, pm.TOP_ITEM_REACH_AT_10: 3 / 3,
        pm.REC_POPULARITY_MEAN_AT_10: 128 / 22, pm.REC_POPULARITY_MEDIAN_AT_10: 6.0,
        pm.REC_POPULARITY_PERCENTILE_MEAN_AT_10: 16.2 / 22, pm.REC_POPULARITY_PERCENTILE_MEDIAN_AT_10: 0.775,
        pm.CATALOGUE_POPULARITY_MEAN: 60 / 20, pm.CATALOGUE_POPULARITY_MEDIAN: 1.5,
        pm.POPULARITY_LIFT_AT_10: (128 / 22) / 3,
        pm.NEIGHBOUR_LIST_LENGTH: 2, pm.ITEMS_WITH_SIMILAR_SHARE: 3 / 20, pm.SIMILAR_COVERAGE: 3 / 20,
        pm.SIMILAR_GINI: 87 / 100, pm.SIMILAR_TOP1PCT_SHARE: 2 / 5,
    }
    assert set(m) == set(pm.METRICS)
    assert m == pytest.approx(expected, abs=1e-12)


def test_metric_names_are_unique_lowercase_snake_case():
    names = list(pm.METRICS) + [pm.POPULARITY_BOOST]
    assert len(set(names)) == len(names)
    assert all(n == n.lower() and n.replace("_", "").isalnum() for n in names)
    assert {rule[0] for rule in narrowing.RULES} <= set(pm.METRICS)


def test_measure_does_not_depend_on_row_order():
    shuffled = _recs().sample(frac=1.0, random_state=3)
    m = pm.measure(shuffled, _sims().sample(frac=1.0, random_state=4), _ratings(), _movies(), _users())
    assert m == pytest.approx(_measure(), abs=1e-12)


def test_sparse_item_ids_give_the_same_figures():
    big = 10**12  # ids far beyond a dense lookup table
    recs, sims, ratings, movies = _recs(), _sims(), _ratings(), _movies()
    recs[c.ITEM_ID] *= big
    sims[[c.ITEM_ID, c.SIMILAR_ITEM_ID]] *= big
    ratings[c.ITEM_ID] *= big
    movies[c.ITEM_ID] *= big
    assert pm.measure(recs, sims, ratings, movies, _users()) == pytest.approx(_measure(), abs=1e-12)


def test_fallback_is_the_source_of_the_best_ranked_row_and_side_info_counts():
    recs = _recs()
    recs.loc[recs[c.USER_ID] == 2, c.SOURCE] = SRC_SIDE
    recs.loc[(recs[c.USER_ID] == 1) & (recs[c.RANK] > 1), c.SOURCE] = SRC_POP  # best row still 'model'
    m = pm.measure(recs, _sims(), _ratings(), _movies(), _users())
    assert m[pm.FALLBACK_SHARE] == pytest.approx(2 / 3)
    assert m[pm.SIDE_INFO_SHARE] == pytest.approx(1 / 3)
    assert m[pm.POPULARITY_FALLBACK_SHARE] == pytest.approx(1 / 3)


def test_ratings_of_items_outside_the_catalogue_do_not_count():
    extra = pd.DataFrame({c.USER_ID: [900, 901], c.ITEM_ID: [99, 99], c.RATING: [5, 5]})
    m = pm.measure(_recs(), _sims(), pd.concat([_ratings(), extra]), _movies(), _users())
    assert m[pm.CATALOGUE_POPULARITY_MEAN] == pytest.approx(3.0)
    assert m[pm.REC_POPULARITY_MEAN_AT_10] == pytest.approx(128 / 22)


def test_empty_tables_give_zero_reach_and_undefined_concentration():
    empty_recs = _recs().iloc[:0]
    empty_sims = _sims().iloc[:0]
    m = pm.measure(empty_recs, empty_sims, _ratings(), _movies(), _users())
    assert m[pm.USERS_WITH_RECOMMENDATIONS_SHARE] == 0.0
    assert m[pm.COVERAGE_AT_10] == 0.0 and m[pm.SIMILAR_COVERAGE] == 0.0
    assert math.isnan(m[pm.GINI_AT_10]) and math.isnan(m[pm.FALLBACK_SHARE])
    assert math.isnan(m[pm.REC_POPULARITY_MEAN_AT_10]) and math.isnan(m[pm.SIMILAR_TOP1PCT_SHARE])


def test_popularity_boost_is_recorded_only_when_given():
    assert pm.POPULARITY_BOOST not in _measure()
    assert _measure(popularity_boost=0.5)[pm.POPULARITY_BOOST] == 0.5


# --- narrowing ------------------------------------------------------------------------------------------
BASE = {pm.COVERAGE_AT_10: 0.30, pm.COVERAGE_AT_N: 0.60, pm.SIMILAR_COVERAGE: 0.90, pm.GINI_AT_10: 0.90,
        pm.SIMILAR_GINI: 0.50, pm.TOP1PCT_SHARE_AT_10: 0.20, pm.SIMILAR_TOP1PCT_SHARE: 0.05,
        pm.POPULARITY_LIFT_AT_10: 4.0}


def test_compare_flags_each_rule_just_past_its_threshold_and_not_just_before():
    t = narrowing.Thresholds()
    cases = [  # (metric, value just inside, value just past)
        (pm.COVERAGE_AT_10, 0.30 * 0.91, 0.30 * 0.89),
        (pm.COVERAGE_AT_N, 0.60 * 0.91, 0.60 * 0.89),
        (pm.SIMILAR_COVERAGE, 0.90 * 0.91, 0.90 * 0.89),
        (pm.GINI_AT_10, 0.91, 0.93),
        (pm.SIMILAR_GINI, 0.51, 0.53),
        (pm.TOP1PCT_SHARE_AT_10, 0.24, 0.26),
        (pm.SIMILAR_TOP1PCT_SHARE, 0.09, 0.11),
        (pm.POPULARITY_LIFT_AT_10, 4.0 * 1.09, 4.0 * 1.11),
    ]
    for metric, inside, past in cases:
        assert narrowing.compare({**BASE, metric: inside}, BASE, t) == [], metric
        (w,) = narrowing.compare({**BASE, metric: past}, BASE, t)
        assert (w.metric, w.previous, w.current) == (metric, BASE[metric], past)
        assert metric in w.message


def test_compare_relative_change_and_message():
    (w,) = narrowing.compare({**BASE, pm.COVERAGE_AT_10: 0.24}, BASE)
    assert w.mode == "relative" and w.change == pytest.approx(-0.2) and w.threshold == 0.10
    assert "-20.0%" in w.message


def test_widening_and_missing_figures_are_not_flagged():
    wider = {**BASE, pm.COVERAGE_AT_10: 0.6, pm.GINI_AT_10: 0.5, pm.POPULARITY_LIFT_AT_10: 1.0}
    assert narrowing.compare(wider, BASE) == []
    assert narrowing.compare(BASE, None) == []
    assert narrowing.compare({pm.GINI_AT_10: math.nan}, {pm.GINI_AT_10: 0.1}) == []
    assert narrowing.compare({pm.COVERAGE_AT_10: 0.5}, {}) == []
    assert narrowing.compare({pm.POPULARITY_LIFT_AT_10: 3.0}, {pm.POPULARITY_LIFT_AT_10: 0.0}) == []


def test_thresholds_are_settable_and_validated():
    loose = narrowing.Thresholds.from_dict({"gini_rise": 0.5})
    assert narrowing.compare({**BASE, pm.GINI_AT_10: 0.99}, BASE, loose) == []
    assert narrowing.Thresholds.from_dict(None) == narrowing.Thresholds()
    with pytest.raises(ValueError, match="unknown field"):
        narrowing.Thresholds.from_dict({"gini": 0.1})
    with pytest.raises(ValueError, match="gini_rise"):
        narrowing.Thresholds(gini_rise=0)


def test_check_narrowing_warns_or_refuses():
    narrowed = {**BASE, pm.GINI_AT_10: 0.99}
    assert [w.metric for w in narrowing.check_narrowing(narrowed, BASE)] == [pm.GINI_AT_10]
    assert narrowing.check_narrowing(BASE, BASE, refuse=True) == []
    with pytest.raises(narrowing.NarrowingError, match="gini_at_10.*stays live") as err:
        narrowing.check_narrowing(narrowed, BASE, refuse=True, previous_id="pub-1")
    assert [w.metric for w in err.value.warnings] == [pm.GINI_AT_10]


def test_summary_markdown_lists_warnings_and_every_figure():
    narrowed = {**BASE, pm.GINI_AT_10: 0.99}
    text = narrowing.summary_markdown(narrowed, BASE, narrowing.compare(narrowed, BASE))
    assert text.startswith("**Narrowing flagged**")
    assert "| gini_at_10 ⚠ | 0.99 | 0.9 | +0.09 |" in text
    assert all(f"| {name}" in text for name in BASE)


# --- a data change that concentrates ratings on few items ------------------------------------------------
def _concentrate(src, dst, n_hits=10, share=0.8, seed=0) -> pd.DataFrame:
    """Copy a MovieLens folder, moving `share` of the ratings onto its n_hits most-rated items."""
    shutil.copytree(src, dst)
    data = pd.read_csv(src / "u.data", sep="\t", header=None)
    hits = data[1].value_counts().index[:n_hits].to_numpy()
    rng = np.random.default_rng(seed)
    move = rng.random(len(data)) < share
    data.loc[move, 1] = rng.choice(hits, int(move.sum()))
    data = data.drop_duplicates([0, 1])  # a user rates an item once
    data.to_csv(dst / "u.data", sep="\t", header=False, index=False)
    return data


def _publish_figures(folder, seed: int) -> dict:
    """Fit the pipeline's ranking model (3 epochs) and measure the tables publish would stage."""
    from tasks.sources import movielens
    from tasks.publishing import score_tables
    from tasks.learning import training as train
    from tasks.learning import kind_config

    s = movielens.read_sources(folder)
    config = kind_config.model_config(c.MODEL_KIND_DOT, {"epochs": 3, "seed": seed})
    rec = train.fit(s.ratings, config, users=s.users, movies=s.movies)
    recs = score_tables.score_recommendations(rec, s.ratings, s.users[c.USER_ID].to_numpy(), 50, users_df=s.users)
    sims = score_tables.score_similar_items(rec, 20, catalogue=s.movies[c.ITEM_ID].to_numpy(), device="cpu")
    return pm.measure(recs, sims, s.ratings, s.movies, s.users, popularity_boost=config.popularity_boost)


@pytest.fixture(scope="module")
def synthetic_figures(synthetic_small, tmp_path_factory):
    concentrated = tmp_path_factory.mktemp("concentrated") / "ml"
    data = _concentrate(synthetic_small, concentrated)
    top10 = data[1].value_counts().iloc[:10].sum()
    assert top10 > 0.5 * len(data)  # the change did put most ratings on few items
    return {"before": _publish_figures(synthetic_small, seed=42),
            "unchanged": _publish_figures(synthetic_small, seed=43),
            "concentrated": _publish_figures(concentrated, seed=42)}


def test_concentrated_ratings_are_flagged(synthetic_figures):
    before, after = synthetic_figures["before"], synthetic_figures["concentrated"]
    flagged = {w.metric for w in narrowing.compare(after, before)}
    assert {pm.COVERAGE_AT_10, pm.GINI_AT_10, pm.TOP1PCT_SHARE_AT_10} <= flagged
    with pytest.raises(narrowing.NarrowingError):
        narrowing.check_narrowing(after, before, refuse=True)


def test_unchanged_data_refit_with_another_seed_is_not_flagged(synthetic_figures):
    assert narrowing.compare(synthetic_figures["unchanged"], synthetic_figures["before"]) == []
    assert narrowing.compare(synthetic_figures["before"], synthetic_figures["before"]) == []


# --- history files ---------------------------------------------------------------------------------------
def test_history_files_round_trip_append_only(home):
    figures = {pm.COVERAGE_AT_10: 0.25, pm.GINI_AT_10: math.nan}
    path = metrics_history.write(home, "20260101T000000000Z-aaaaaa", figures)
    assert path == home.publications / "metrics" / "20260101T000000000Z-aaaaaa.json"
    assert '"value": null' in path.read_text()
    back = metrics_history.read(home, "20260101T000000000Z-aaaaaa")
    assert back[pm.COVERAGE_AT_10] == 0.25 and math.isnan(back[pm.GINI_AT_10])
    assert metrics_history.write(home, "20260101T000000000Z-aaaaaa", figures) == path  # same figures: no-op
    with pytest.raises(FileExistsError, match="already recorded"):
        metrics_history.write(home, "20260101T000000000Z-aaaaaa", {pm.COVERAGE_AT_10: 0.5})
    assert metrics_history.read(home, "missing") is None and metrics_history.read(home, None) is None
    assert not list(path.parent.glob(".*"))  # no temporary left behind


def test_history_lists_every_publication_oldest_first_and_discard_removes_one(home):
    metrics_history.write(home, "20260102T000000000Z-bbbbbb", {pm.COVERAGE_AT_10: 0.2})
    metrics_history.write(home, "20260101T000000000Z-aaaaaa", {pm.COVERAGE_AT_10: 0.3, pm.GINI_AT_10: 0.9})
    frame = metrics_history.history(home)
    assert list(frame.columns) == list(c.PUBLICATION_METRICS_COLUMNS)
    assert frame[c.PUBLICATION_ID].tolist() == ["20260101T000000000Z-aaaaaa"] * 2 + ["20260102T000000000Z-bbbbbb"]
    metrics_history.discard(home, "20260102T000000000Z-bbbbbb")
    assert [p.stem for p in metrics_history.files(home)] == ["20260101T000000000Z-aaaaaa"]


def test_a_broken_history_file_names_its_line(home):
    path = metrics_history.metrics_path(home, "p1")
    path.parent.mkdir(parents=True)
    path.write_text('{"publication_id": "p1", "metric": "gini_at_10", "value": 0.5}\nnot json\n')
    with pytest.raises(ValueError, match=r"p1.json line 2"):
        metrics_history.read(home, "p1")


# --- the warehouse table and the consumer query -------------------------------------------------------------
PUBS = ["20260101T000000000Z-aaaaaa", "20260102T000000000Z-bbbbbb", "20260103T000000000Z-cccccc"]


def _warehouse(home, tmp_path, live: str):
    """A DuckDB file with publication_metrics (from the history files) and the live recommendations table."""
    values = {PUBS[0]: (0.30, 0.90), PUBS[1]: (0.20, 0.95), PUBS[2]: (0.25, 0.93)}
    for pid, (cov, gini) in values.items():
        metrics_history.write(home, pid, {pm.COVERAGE_AT_10: cov, pm.GINI_AT_10: gini})
    recs = _recs().assign(**{c.MODEL_NAME: "m", c.MODEL_VERSION: "1", c.PUBLICATION_ID: live})
    parquet = tmp_path / "recommendations.parquet"
    # a snapshot as published before predicted_rating existed: the warehouse reads that column as null
    recs[[col for col in c.RECOMMENDATIONS_COLUMNS if col != c.PREDICTED_RATING]].to_parquet(parquet, index=False)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    metrics_history.warehouse_section(con, home)
    sql.run(con, c.RECOMMENDATIONS, {"path": str(parquet)})
    assert con.execute(f"select count(*) from recommendations where {c.PREDICTED_RATING} is null").fetchall() == [(len(recs),)]
    return con


def _health(con) -> dict:
    text = (sql.SQL_DIR / "query_health.sql").read_text()
    rel = con.sql(text)  # verbatim, as the DuckDB CLI would run it
    return {row[0]: dict(zip(rel.columns, row)) for row in rel.fetchall()}


def test_publication_metrics_table_holds_every_recorded_publication(home, tmp_path):
    con = _warehouse(home, tmp_path, live=PUBS[2])
    rows = con.execute(f"select * from {c.PUBLICATION_METRICS} order by all").fetchall()
    assert [d[0] for d in con.description] == list(c.PUBLICATION_METRICS_COLUMNS)
    assert len(rows) == 6 and rows[0] == (PUBS[0], pm.COVERAGE_AT_10, 0.30)


def test_query_health_shows_live_previous_change_and_range(home, tmp_path):
    text = (sql.SQL_DIR / "query_health.sql").read_text()
    assert "{{" not in text and "$" not in text
    con = _warehouse(home, tmp_path, live=PUBS[2])
    health = _health(con)
    cov = health[pm.COVERAGE_AT_10]
    assert cov["live_publication_id"] == PUBS[2] and cov["previous_publication_id"] == PUBS[1]
    assert (cov["live_value"], cov["previous_value"]) == (0.25, 0.20)
    assert cov["change"] == pytest.approx(0.05) and cov["relative_change"] == pytest.approx(0.25)
    assert (cov["n_publications"], cov["history_min"], cov["history_max"]) == (3, 0.20, 0.30)
    assert cov["last_5_newest_first"] == [0.25, 0.20, 0.30]
    assert health[pm.GINI_AT_10]["change"] == pytest.approx(-0.02)


def test_query_health_follows_the_live_publication_and_a_chosen_one(home, tmp_path):
    con = _warehouse(home, tmp_path, live=PUBS[1])  # a rollback left the second one live
    cov = _health(con)[pm.COVERAGE_AT_10]
    assert (cov["live_publication_id"], cov["previous_publication_id"], cov["n_publications"]) == (PUBS[1], PUBS[0], 2)
    con.execute(f"set variable health_publication_id = '{PUBS[0]}'")
    cov = _health(con)[pm.COVERAGE_AT_10]
    assert cov["live_publication_id"] == PUBS[0] and cov["previous_value"] is None and cov["change"] is None


def test_no_history_creates_no_table(home):
    con = duckdb.connect()
    metrics_history.warehouse_section(con, home)
    assert con.execute("select count(*) from information_schema.tables").fetchone()[0] == 0
