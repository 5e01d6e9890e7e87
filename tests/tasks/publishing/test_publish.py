"""publish: scoring, unknown-user fallback, snapshot + warehouse swap, retention, consumer SQL."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from tasks.core import contract as c
from tasks.learning import popularity
from tasks.stores import publications as store
from tasks.publishing import publish as pub
from tasks.publishing import score_tables as st
from tasks.core import sql
from tasks.registry.model_ref import ModelRef, ServingModel
from tasks.registry.serving import roles
from tasks.core.settings import Paths

N_COLD = 10  # users left out of training: they must get popularity (or side-info) recommendations


@dataclass
class World:
    """A data home with a lake snapshot, the source tables and a trained dot-bias model."""

    paths: Paths
    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame
    model: object
    meta: ModelRef
    cold: np.ndarray


def train_tiny(ratings: pd.DataFrame, kind: str = c.MODEL_KIND_DOT, users: pd.DataFrame | None = None, **kw):
    """A small model trained in about a second on CPU."""
    from models.recipes import for_kind
    from models.recommender import Recommender

    config = for_kind(kind, n_factors=8, epochs=3, **kw)
    features = None
    if users is not None:
        features = {col: users[col].to_numpy() for col in (c.USER_ID, c.AGE, c.GENDER, c.OCCUPATION)}
    from tasks.learning.split import unix_seconds

    return Recommender.fit(ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy(),
                           ratings[c.RATING].to_numpy(), config, user_features=features, device="cpu",
                           # the NN recipe reads the rating's time
                           times=unix_seconds(ratings[c.RATED_AT]) if c.RATED_AT in ratings else None)


def make_world(root, synthetic_folder) -> World:
    """Ingest the synthetic folder into a lake under `root` and train on all but N_COLD users."""
    from tasks.stores import lake
    from tasks.sources.movielens import read_sources

    tables = read_sources(synthetic_folder)
    paths = Paths(root)
    lake.write_snapshot(paths, tables, "synthetic")
    cold = np.sort(tables.users[c.USER_ID].to_numpy())[-N_COLD:]
    train = tables.ratings[~tables.ratings[c.USER_ID].isin(cold)]
    meta = ModelRef(c.registered_model_name(c.MODEL_KIND_DOT), "1", "models:/lensflow-dot_bias/1",
                    "run-x", "split-x", "synthetic")
    return World(paths, tables.ratings, tables.movies, tables.users, train_tiny(train), meta, cold)


def publish_world(w: World, **kw) -> pub.PublicationResult:
    """One publish of the world's model with small n and k."""
    kw = {"n": 10, "k": 20, **kw}
    return pub.publish(w.paths, serving(w), w.ratings, w.movies, w.users, **kw)


def serving(w: World) -> "roles":
    """The world's model as the one serving model (lists and similar items, no ratings), with made-up metrics."""
    return roles([ServingModel(w.model, w.meta, {"ndcg_at_10": 0.1})])


def query(paths: Paths, name: str, params: dict | None = None) -> list[dict]:
    """Run a consumer query file on the live warehouse, read-only."""
    from tasks.stores.warehouse import connect_readonly

    con = connect_readonly(paths)
    try:
        cur = sql.run(con, name, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_small) -> World:
    return make_world(tmp_path_factory.mktemp("publish") / "home", synthetic_small)


@pytest.fixture(scope="module")
def published(world) -> pub.PublicationResult:
    return publish_world(world)


# --- scoring -------------------------------------------------------------------------------------

def test_recommendations_never_contain_rated_items(world):
    recs = st.score_recommendations(world.model, world.ratings, world.users[c.USER_ID].to_numpy(), 30)
    rated = set(zip(world.ratings[c.USER_ID], world.ratings[c.ITEM_ID]))
    assert len(recs) > 0
    assert not any(pair in rated for pair in zip(recs[c.USER_ID], recs[c.ITEM_ID]))
    # every user gets a full list, or every item left to recommend when fewer than 30 remain: the model
    # knows only items rated in its training data, minus what the user rated (no -1 padding rows)
    assert (recs[c.ITEM_ID] > 0).all()
    known = set(world.model.item_ids.tolist())
    rated_known = world.ratings[world.ratings[c.ITEM_ID].isin(known)].groupby(c.USER_ID).size()
    sizes = recs.groupby(c.USER_ID).size()
    for user, size in sizes.items():
        allowed = len(known) - int(rated_known.get(user, 0))
        assert size == min(30, allowed), (user, size, allowed)
    assert (sizes == 30).mean() > 0.9


def test_model_rows_reproduce_recommend(world):
    users = world.users[c.USER_ID].to_numpy()
    recs = st.score_recommendations(world.model, world.ratings, users, 10)
    known = recs[recs[c.SOURCE] == st.SOURCE_MODEL]
    some = np.unique(known[c.USER_ID])[:15]
    items, scores = world.model.recommend(some, 10, exclude=(world.ratings[c.USER_ID].to_numpy(),
                                                             world.ratings[c.ITEM_ID].to_numpy()))
    for row, user in enumerate(some):
        mine = known[known[c.USER_ID] == user].sort_values(c.RANK)
        assert mine[c.ITEM_ID].tolist() == items[row].tolist()
        np.testing.assert_allclose(mine[c.SCORE].to_numpy(), scores[row], rtol=1e-6)


def test_unknown_users_without_a_profile_get_plain_most_rated(world):
    users = world.users[c.USER_ID].to_numpy()
    recs = st.score_recommendations(world.model, world.ratings, users, 10)   # no users_df: no profiles
    cold = recs[recs[c.USER_ID].isin(world.cold)]
    assert set(cold[c.USER_ID]) == set(world.cold)
    assert set(cold[c.SOURCE]) == {st.SOURCE_POPULARITY}
    assert set(recs[~recs[c.USER_ID].isin(world.cold)][c.SOURCE]) == {st.SOURCE_MODEL}
    # the fallback is plain most-rated (ties: lower id) with the user's own rated items removed
    counts = world.ratings.groupby(c.ITEM_ID).size().reset_index(name="n")
    ranking = counts.sort_values(["n", c.ITEM_ID], ascending=[False, True])[c.ITEM_ID].tolist()
    user = world.cold[0]
    seen = set(world.ratings.loc[world.ratings[c.USER_ID] == user, c.ITEM_ID])
    expected = [i for i in ranking if i not in seen][:10]
    assert cold[cold[c.USER_ID] == user].sort_values(c.RANK)[c.ITEM_ID].tolist() == expected


def test_unknown_users_with_a_profile_get_demographic_lists(world):
    recs = st.score_recommendations(world.model, world.ratings, world.users[c.USER_ID].to_numpy(), 10,
                                    users_df=world.users)
    cold = recs[recs[c.USER_ID].isin(world.cold)]
    assert set(cold[c.SOURCE]) == {st.SOURCE_SIDE_INFO}
    assert len(cold) == 10 * N_COLD
    rated = set(zip(world.ratings[c.USER_ID], world.ratings[c.ITEM_ID]))
    assert not any(pair in rated for pair in zip(cold[c.USER_ID], cold[c.ITEM_ID]))


def test_popularity_recommend_excludes_each_users_items():
    ratings = pd.DataFrame({c.USER_ID: [1, 2, 3, 1, 2, 4], c.ITEM_ID: [10, 10, 10, 20, 30, 30],
                            c.RATING: [4, 4, 4, 5, 1, 2]})
    score = pd.Series([3.0, 2.0, 1.0], index=[20, 10, 30])        # best first: 20, 10, 30
    items, scores = popularity.recommend(score, np.array([1, 4]), ratings, 3)
    assert items[0, 0] == 30 and np.isneginf(scores[0, 1:]).all()   # user 1 rated 10 and 20
    assert items[1, :2].tolist() == [20, 10] and np.isneginf(scores[1, 2])   # user 4 rated 30
    np.testing.assert_allclose(scores[1, :2], [score[20], score[10]])


def test_similar_items_are_cosine_neighbours_without_self(world):
    sims = st.score_similar_items(world.model, 5)
    ids, vectors = world.model.item_embeddings()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    for row in (0, 7, len(ids) - 1):
        expected = ids[np.argsort(-full[row], kind="stable")[:5]]
        mine = sims[sims[c.ITEM_ID] == ids[row]].sort_values(c.RANK)
        assert mine[c.SIMILAR_ITEM_ID].tolist() == expected.tolist()
        np.testing.assert_allclose(mine[c.SIMILARITY].to_numpy(), np.sort(full[row])[::-1][:5],
                                   rtol=1e-4, atol=1e-5)
    assert (sims[c.ITEM_ID] != sims[c.SIMILAR_ITEM_ID]).all()


def test_each_model_gets_its_job_the_ranking_model_lists_the_rating_model_rates(world):
    nn = train_tiny(world.ratings, c.MODEL_KIND_NN)
    nn_model = ServingModel(nn, ModelRef("lensflow-embedding_nn", "3"), alias=c.ALIAS_SERVING)
    chosen = roles([nn_model, ServingModel(world.model, world.meta)])
    assert chosen.ranking.recommender is world.model and chosen.similar.recommender is world.model
    assert chosen.rating.recommender is nn and chosen.rating.ref.version == "3" and chosen.no_rating == ""
    asked = roles([nn_model, ServingModel(world.model, world.meta)], prefer=c.MODEL_KIND_NN)   # publish --model
    assert asked.ranking.recommender is nn and asked.similar.recommender is world.model
    refused = roles([ServingModel(nn, ModelRef("lensflow-embedding_nn", "4"), alias=c.ALIAS_CANDIDATE),
                     ServingModel(world.model, world.meta)])
    assert refused.rating is None and "only a candidate" in refused.no_rating   # a refused model rates nothing
    alone = roles([ServingModel(world.model, world.meta)])
    assert alone.rating is None and "no embedding_nn model" in alone.no_rating


def test_every_published_row_carries_the_rating_models_prediction_cold_users_included(world, tmp_path,
                                                                                    synthetic_small):
    nn = train_tiny(world.ratings[~world.ratings[c.USER_ID].isin(world.cold)], c.MODEL_KIND_NN,
                    users=world.users)
    rating = ServingModel(nn, ModelRef("lensflow-embedding_nn", "7", "models:/lensflow-embedding_nn/7"),
                          alias=c.ALIAS_SERVING)
    w = make_world(tmp_path / "rated", synthetic_small)
    res = pub.publish(w.paths, roles([ServingModel(w.model, w.meta, {"ndcg_at_10": 0.1}), rating]), w.ratings,
                      w.movies, w.users, n=10, k=5)
    recs = pd.read_parquet(res.snapshot / store.RECOMMENDATIONS_FILE)
    assert list(recs.columns) == list(c.RECOMMENDATIONS_COLUMNS)
    assert recs[c.PREDICTED_RATING].notna().all() and recs[c.PREDICTED_RATING].between(1, 5).all()
    np.testing.assert_allclose(recs[c.PREDICTED_RATING].to_numpy(),
                               np.clip(nn.predict(recs[c.USER_ID].to_numpy(), recs[c.ITEM_ID].to_numpy()), 1, 5),
                               rtol=1e-6)
    cold = recs[recs[c.USER_ID].isin(w.cold)]
    assert len(cold) and cold[c.SOURCE].eq(c.SOURCE_SIDE_INFO).all()
    # a cold user's prediction comes from their own side features: two users of different profiles differ
    assert cold.groupby(c.USER_ID)[c.PREDICTED_RATING].mean().nunique() > 1
    record = json.loads((res.snapshot / store.RECORD_FILE).read_text())
    assert (record[c.RATING_MODEL_NAME], record[c.RATING_MODEL_VERSION]) == ("lensflow-embedding_nn", "7")
    top = query(w.paths, "query_top10_for_user", {"user_id": int(w.cold[0])})
    assert all(1 <= row[c.PREDICTED_RATING] <= 5 for row in top)
    listed = query(w.paths, "query_publications")
    assert listed[0][c.RATING_MODEL_VERSION] == "7"


def test_without_a_rating_model_the_column_is_null_and_the_publication_goes_live(world, published):
    recs = pd.read_parquet(published.snapshot / store.RECOMMENDATIONS_FILE)
    assert c.PREDICTED_RATING in recs.columns and recs[c.PREDICTED_RATING].isna().all()
    assert store.current(world.paths) == published.publication_id


# --- publish: snapshot, warehouse, history --------------------------------------------------------

def test_publish_writes_snapshot_and_warehouse(world, published):
    res = published
    assert store.current(world.paths) == res.publication_id
    for name in (store.RECOMMENDATIONS_FILE, store.SIMILAR_ITEMS_FILE, store.RECORD_FILE):
        assert (res.snapshot / name).is_file()
    assert res.recommendation_rows == 10 * len(world.users)
    by_source = dict(res.rows_by_source)
    assert by_source.pop(st.SOURCE_SIDE_INFO) == 10 * N_COLD   # the users the model never saw, by demographics
    assert by_source.pop(st.SOURCE_MODEL) + by_source.pop(st.SOURCE_METADATA, 0) == 10 * (len(world.users) - N_COLD)
    assert by_source == {}
    live = query(world.paths, "query_live_publication")
    assert [(r["table_name"], r[c.PUBLICATION_ID], r["listed"]) for r in live] == [
        (c.RECOMMENDATIONS, res.publication_id, True), (c.SIMILAR_ITEMS, res.publication_id, True)]
    record = json.loads((res.snapshot / store.RECORD_FILE).read_text())
    assert record[c.MODEL_URI] == world.meta.uri and record[c.SPLIT_ID] == "split-x"
    assert record[c.DATA_HASH] == "synthetic" and json.loads(record[c.METRICS_JSON]) == {"ndcg_at_10": 0.1}
    # the published Parquet is sorted by (user_id, rank)
    recs = pd.read_parquet(res.snapshot / store.RECOMMENDATIONS_FILE)
    assert list(recs.columns) == list(c.RECOMMENDATIONS_COLUMNS)
    assert recs.equals(recs.sort_values([c.USER_ID, c.RANK], ignore_index=True))


def test_consumer_queries(world, published):
    user = int(world.users[c.USER_ID].iloc[0])
    top = query(world.paths, "query_top10_for_user", {c.USER_ID: user})
    assert [r[c.RANK] for r in top] == list(range(1, 11))
    titles = dict(zip(world.movies[c.ITEM_ID], world.movies[c.TITLE]))
    assert all(r[c.TITLE] == titles[r[c.ITEM_ID]] for r in top)
    item = int(world.movies[c.ITEM_ID].iloc[0])
    similar = query(world.paths, "query_similar_items_for_item", {c.ITEM_ID: item})
    assert len(similar) == 10 and all(r[c.SIMILAR_TITLE] == titles[r[c.SIMILAR_ITEM_ID]] for r in similar)
    because = query(world.paths, "query_because_you_watched", {c.USER_ID: user})
    seen = set(world.ratings.loc[world.ratings[c.USER_ID] == user, c.ITEM_ID])
    assert because and all(r[c.SIMILAR_ITEM_ID] not in seen for r in because)
    most = query(world.paths, "query_most_recommended")
    assert 0 < len(most) <= 20 and most[0]["n_users_recommended"] >= most[-1]["n_users_recommended"]
    coverage = query(world.paths, "query_coverage_by_genre")
    assert {r["genre"] for r in coverage} <= set(c.GENRE_NAMES)
    assert sum(r["n_items"] for r in coverage) >= len(world.movies)


def publication_diff(paths: Paths, old: str, new: str) -> tuple:
    """The one row of query_publication_diff between two publications."""
    from tasks.stores.warehouse import connect_readonly

    con = connect_readonly(paths)
    try:
        sql.run(con, "set_publication_diff", {"old_publication_id": old, "new_publication_id": new})
        (row,) = sql.rows(con, "query_publication_diff")
    finally:
        con.close()
    return row


def expected_diff(old: pd.DataFrame, new: pd.DataFrame) -> tuple:
    """query_publication_diff's numbers recomputed with pandas from two snapshots' top 10s."""
    old, new = (df[df[c.RANK] <= 10] for df in (old, new))
    olds = {u: dict(zip(g[c.ITEM_ID], g[c.RANK])) for u, g in old.groupby(c.USER_ID)}
    news = {u: dict(zip(g[c.ITEM_ID], g[c.RANK])) for u, g in new.groupby(c.USER_ID)}
    users = set(olds) | set(news)
    changed = sum(olds.get(u) != news.get(u) for u in users)
    overlap = np.mean([len(set(news.get(u, {})) & set(olds.get(u, {}))) / max(len(news.get(u, {})), 1)
                       for u in users])
    entering = len(set(new[c.ITEM_ID]) - set(old[c.ITEM_ID]))
    leaving = len(set(old[c.ITEM_ID]) - set(new[c.ITEM_ID]))
    return len(users), changed, round(float(overlap), 4), entering, leaving


def test_republish_history_diff_and_retention(tmp_path, synthetic_small):
    w = make_world(tmp_path / "home", synthetic_small)
    first = publish_world(w, retain=2)
    second = publish_world(w, retain=2)   # same model: nothing changes between the two
    diff = publication_diff(w.paths, first.publication_id, second.publication_id)
    assert diff == (first.publication_id, second.publication_id, len(w.users), 0, 1.0, 0, 0)
    # a model trained with another seed: the diff must match a pandas recount of the two snapshots
    train = w.ratings[~w.ratings[c.USER_ID].isin(w.cold)]
    other = ModelRef(w.meta.name, "2")
    third = pub.publish(w.paths, roles([ServingModel(train_tiny(train, seed=1), other)]), w.ratings, w.movies, w.users,
                        n=10, k=5, retain=2)
    diff = publication_diff(w.paths, third.publication_id, second.publication_id)  # order-insensitive
    assert diff[:2] == (second.publication_id, third.publication_id)
    old, new = (pd.read_parquet(r.snapshot / store.RECOMMENDATIONS_FILE) for r in (second, third))
    assert tuple(float(x) if isinstance(x, float) else x for x in diff[2:]) == expected_diff(old, new)
    assert diff[3] > 0  # the new model really changed some lists
    # retention: only the two newest snapshots are kept, on disk and in the publications table
    assert [p.name for p in store.retained(w.paths)] == [second.publication_id, third.publication_id]
    assert not (w.paths.publications / first.publication_id).exists()
    listed = query(w.paths, "query_publications")
    assert [r[c.PUBLICATION_ID] for r in listed] == [third.publication_id, second.publication_id]
    assert listed[0][c.MODEL_VERSION] == "2" and listed[0][c.RECOMMENDATION_ROWS] == 10 * len(w.users)
    served = query(w.paths, "query_live_publication")
    assert {r[c.PUBLICATION_ID] for r in served} == {third.publication_id}


def test_publish_task_runs_in_a_flow(prefect_api, world, published):
    from prefect import flow

    from flows import steps

    @flow
    def publish_flow():
        return steps.publish(world.paths, serving(world), world.ratings, world.movies,
                                    world.users, n=3, k=2)

    res = publish_flow()
    assert store.current(world.paths) == res.publication_id != published.publication_id
    assert res.recommendation_rows == 3 * len(world.users)


def test_popularity_recommend_in_small_chunks_matches_a_plain_loop():
    rng = np.random.default_rng(4)
    ratings = pd.DataFrame({c.USER_ID: rng.integers(1, 30, 400), c.ITEM_ID: rng.integers(1, 25, 400),
                            c.RATING: rng.integers(1, 6, 400)}).drop_duplicates([c.USER_ID, c.ITEM_ID])
    counts = ratings.groupby(c.ITEM_ID).size().reset_index(name="n")
    counts = counts.sort_values(["n", c.ITEM_ID], ascending=[False, True])     # best first, as recommend wants
    score = pd.Series(counts["n"].to_numpy(np.float32), index=counts[c.ITEM_ID].to_numpy())
    users = np.array([29, 3, 17, 99, 1])                   # unsorted, one without ratings
    items, scores = popularity.recommend(score, users, ratings, 10, chunk=2)
    for row, user in enumerate(users):
        rated = set(ratings.loc[ratings[c.USER_ID] == user, c.ITEM_ID])
        expected = [i for i in score.index if i not in rated][:10]
        got = [i for i, s in zip(items[row], scores[row]) if np.isfinite(s)]
        assert got == expected
        np.testing.assert_allclose(scores[row, :len(got)], score[expected].to_numpy())
