"""Every publication check fails on a deliberately corrupted table, and the previous publication stays live."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tasks.stores import checks
from tasks.core import contract as c
from tasks.stores import publications as store
from tasks.publishing import publish as pub
from tasks.publishing import score_tables as st
from tasks.registry.serving import roles
from tests.tasks.publishing.test_publish import make_world, publish_world, query

N, K = 10, 5


@pytest.fixture(scope="module")
def live(tmp_path_factory, synthetic_small):
    """A world with one good publication live, plus the good frames of a second one to corrupt."""
    w = make_world(tmp_path_factory.mktemp("checks") / "home", synthetic_small)
    first = publish_world(w, n=N, k=K)
    recs = st.score_recommendations(w.model, w.ratings, w.users[c.USER_ID].to_numpy(), N)
    recs = st.with_predicted_ratings(recs, w.model)   # any model's predictions, clipped to the scale: real values
    sims = st.score_similar_items(w.model, K, catalogue=w.movies[c.ITEM_ID].to_numpy())
    return w, first, recs, sims


def _user_rows(df, key, value):
    return df.index[df[key] == value]


def _rated_item(w, user):
    return int(w.ratings.loc[w.ratings[c.USER_ID] == user, c.ITEM_ID].iloc[0])


def dup_row(df, key, w):
    return pd.concat([df, df.iloc[[3]]], ignore_index=True)


def gap_rank(df, key, w):
    return df.drop(index=_user_rows(df, key, df[key].iloc[0])[1])   # rank 2 of the first id removed


def rising_score(df, key, w):
    col = c.SCORE if key == c.USER_ID else c.SIMILARITY
    df = df.copy()
    rows = _user_rows(df, key, df[key].iloc[0])
    df.loc[rows[2], col] = df.loc[rows[0], col] + (1.0 if col == c.SCORE else 0.0001)
    if col == c.SIMILARITY:  # stay a valid cosine; rank 3 above rank 1 still breaks the order
        df.loc[rows[0], col] = 0.5
        df.loc[rows[2], col] = 0.9
    return df


def bad_source(df, key, w):
    df = df.copy()
    df.loc[df.index[5], c.SOURCE] = "guess"
    return df


def rated_item(df, key, w):
    df = df.copy()
    user = int(df[c.USER_ID].iloc[0])
    df.loc[_user_rows(df, key, user)[4], c.ITEM_ID] = _rated_item(w, user)
    return df


def unknown_item(df, key, w):
    df = df.copy()
    col = c.ITEM_ID if key == c.USER_ID else c.SIMILAR_ITEM_ID
    df.loc[df.index[7], col] = 10 ** 7
    return df


def unknown_key(df, key, w):
    df = df.copy()
    df.loc[df[key] == df[key].max(), key] = 10 ** 7   # a whole list for a user (or item) the catalogue lacks
    return df


def self_similar(df, key, w):
    df = df.copy()
    df.loc[df.index[1], c.SIMILAR_ITEM_ID] = df.loc[df.index[1], c.ITEM_ID]
    return df


def out_of_range(df, key, w):
    df = df.copy()
    first = _user_rows(df, key, df[key].iloc[0])[0]
    df.loc[first, c.SIMILARITY] = 1.5          # rank 1 stays the highest: only the cosine range breaks
    return df


def impossible_rating(df, key, w):
    df = df.copy()
    df.loc[df.index[2], c.PREDICTED_RATING] = 5.5     # off the 1-5 scale
    return df


def foreign_publication(df, key, w):
    df = df.copy()
    df.loc[df.index[0], c.PUBLICATION_ID] = "someone-else"
    return df


R, S = c.RECOMMENDATIONS, c.SIMILAR_ITEMS
CASES = [
    (R, foreign_publication, checks.singular("publication_rows", R).name),
    (R, dup_row, checks.unique(R, c.USER_ID, c.RANK).name),
    (R, gap_rank, checks.dense_ranks(R, c.USER_ID).name),
    (R, rising_score, checks.sorted_by_rank(R, c.USER_ID, c.SCORE).name),
    (R, bad_source, checks.accepted_values(R, c.SOURCE, c.SOURCES).name),
    (R, impossible_rating, checks.in_range_or_null(R, c.PREDICTED_RATING, c.RATING_MIN, c.RATING_MAX).name),
    (R, rated_item, checks.not_in(R, c.RATINGS, c.USER_ID, c.ITEM_ID).name),
    (R, unknown_item, checks.known_ids(R, c.ITEM_ID, c.MOVIES).name),
    (R, unknown_key, checks.known_ids(R, c.USER_ID, c.USERS).name),
    (S, dup_row, checks.unique(S, c.ITEM_ID, c.RANK).name),
    (S, gap_rank, checks.dense_ranks(S, c.ITEM_ID).name),
    (S, rising_score, checks.sorted_by_rank(S, c.ITEM_ID, c.SIMILARITY).name),
    (S, out_of_range, checks.in_range(S, c.SIMILARITY, -1.0001, 1.0001).name),
    (S, self_similar, checks.not_self(S, c.ITEM_ID, c.SIMILAR_ITEM_ID).name),
    (S, bad_source, checks.accepted_values(S, c.SOURCE, c.SIMILARITY_SOURCES).name),
    (S, unknown_item, checks.known_ids(S, c.SIMILAR_ITEM_ID, c.MOVIES, c.ITEM_ID).name),
    (S, unknown_key, checks.known_ids(S, c.ITEM_ID, c.MOVIES).name),
]


def test_every_check_has_a_case():
    assert {check for _, _, check in CASES} == {chk.name for chk in checks.checks_for(pub.PUBLISHED, checks.AT_PUBLISH)}


@pytest.mark.parametrize("table,corrupt,check", CASES, ids=[f"{t}-{f.__name__}" for t, f, _ in CASES])
def test_corrupted_table_is_refused_and_previous_stays_live(live, table, corrupt, check):
    w, first, recs, sims = live
    publication_id = pub.new_publication_id()
    meta = w.meta
    recs = pub.tag(recs, meta, publication_id, c.RECOMMENDATIONS_COLUMNS)
    sims = pub.tag(sims, meta, publication_id, c.SIMILAR_ITEMS_COLUMNS)
    if table == c.RECOMMENDATIONS:
        recs = corrupt(recs, c.USER_ID, w)
    else:
        sims = corrupt(sims, c.ITEM_ID, w)
    record = json.loads((first.snapshot / store.RECORD_FILE).read_text())
    record.update({c.PUBLICATION_ID: publication_id,
                   c.SNAPSHOT_PATH: str(w.paths.publications / publication_id)})
    with pytest.raises(pub.PublicationCheckError) as err:
        pub.publish_tables(w.paths, publication_id, recs, sims, record, w.ratings, w.movies, w.users)
    assert err.value.check == check and err.value.sample
    assert f"check {check} (sql/check_" in str(err.value) and first.publication_id in str(err.value)
    # nothing changed: pointer, snapshot folders, warehouse contents
    assert store.current(w.paths) == first.publication_id
    assert [p.name for p in store.retained(w.paths)] == [first.publication_id]
    assert not any(p.name.startswith(store.STAGING_PREFIX) for p in w.paths.publications.iterdir())
    served = {r[c.PUBLICATION_ID] for r in query(w.paths, "query_live_publication")}
    assert served == {first.publication_id}


def test_uncorrupted_frames_pass_every_check(live, tmp_path):
    w, first, recs, sims = live
    publication_id = pub.new_publication_id()
    recs = pub.tag(recs, w.meta, publication_id, c.RECOMMENDATIONS_COLUMNS)
    sims = pub.tag(sims, w.meta, publication_id, c.SIMILAR_ITEMS_COLUMNS)
    record = json.loads((first.snapshot / store.RECORD_FILE).read_text())
    from tasks.core.settings import Paths

    staged = store.stage(Paths(tmp_path), publication_id, recs, sims, record)
    assert pub.run_checks(staged, publication_id, w.ratings, w.movies, w.users) == []


def test_a_narrowing_publication_is_refused_when_asked_and_the_previous_stays_live(live):
    """Ratings concentrated on a few items narrow the lists: flagged always, refused with refuse_narrowing."""
    from tasks.publishing import narrowing
    from tasks.stores import metrics_history
    from tasks.registry.model_ref import ServingModel
    from tests.tasks.publishing.test_publish import train_tiny

    w, first, _, _ = live
    live_before = store.current(w.paths)
    popular = w.ratings[c.ITEM_ID].value_counts().index[:8].to_numpy()
    narrow = w.ratings[w.ratings[c.ITEM_ID].isin(popular)]           # a model that only knows 8 items
    model = ServingModel(train_tiny(narrow), w.meta)
    with pytest.raises(narrowing.NarrowingError, match="coverage_at_10") as err:
        pub.publish(w.paths, roles([model]), w.ratings, w.movies, w.users, n=N, k=K, refuse_narrowing=True)
    assert err.value.previous_id == live_before and str(live_before) in str(err.value)
    assert store.current(w.paths) == live_before
    assert [p.name for p in store.retained(w.paths)] == [first.publication_id]
    assert metrics_history.read(w.paths, live_before) is not None and len(metrics_history.files(w.paths)) == 1
    served = {r[c.PUBLICATION_ID] for r in query(w.paths, "query_live_publication")}
    assert served == {first.publication_id}


def test_failed_warehouse_rebuild_puts_the_previous_publication_back(live, monkeypatch):
    w, first, recs, sims = live

    def broken(paths):  # fault injection: the swap step fails after CURRENT moved
        assert store.current(paths) != first.publication_id
        raise OSError("disk full")

    monkeypatch.setattr(pub.warehouse, "rebuild", broken)
    with pytest.raises(OSError, match="disk full"):
        publish_world(w, n=N, k=K)
    assert store.current(w.paths) == first.publication_id
    assert [p.name for p in store.retained(w.paths)] == [first.publication_id]
    served = {r[c.PUBLICATION_ID] for r in query(w.paths, "query_live_publication")}
    assert served == {first.publication_id}
