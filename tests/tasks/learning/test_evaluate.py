"""Each metric against values computed by hand on tiny inputs."""

import math

import numpy as np
import pandas as pd
import pytest

from models.recipes import for_kind
from models.recommender import Recommender
from tasks.core import contract as c
from tasks.learning import evaluate as ev

# user 0: recommended [1, 2, 3], relevant {2, 3, 9}: hits at ranks 2 and 3
# user 1: recommended [4, 5, -1] (short list), relevant {7}: no hit
# user 2: relevant empty: left out of every average
REC = np.array([[1, 2, 3], [4, 5, -1], [6, 7, 8]])
REL = [np.array([2, 3, 9]), np.array([7]), np.array([], dtype=np.int64)]
L2, L3, L4 = math.log2(2), math.log2(3), math.log2(4)


def test_rmse_mae():
    assert ev.rmse([1, 2, 3], [1, 4, 3]) == pytest.approx(math.sqrt(4 / 3))
    assert ev.mae([1, 2, 3], [2, 4, 3]) == pytest.approx(1.0)


def test_precision_recall_hit_rate():
    assert ev.precision_at_k(REC, REL, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert ev.recall_at_k(REC, REL, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert ev.hit_rate_at_k(REC, REL, 3) == pytest.approx(0.5)
    # at k=1 nobody hits; recall divides by |relevant|, not min(k, |relevant|)
    assert ev.precision_at_k(REC, REL, 1) == 0.0
    assert ev.recall_at_k(REC, [np.array([1, 2]), np.array([4]), np.array([])], 1) == pytest.approx((1 / 2 + 1) / 2)


def test_ndcg():
    dcg = 1 / L3 + 1 / L4
    idcg = 1 / L2 + 1 / L3 + 1 / L4
    assert ev.ndcg_at_k(REC, REL, 3) == pytest.approx((dcg / idcg + 0) / 2)
    # ideal DCG over min(k, |rel|): one relevant item found first scores 1
    assert ev.ndcg_at_k(np.array([[7, 1]]), [np.array([7])], 2) == pytest.approx(1.0)
    assert ev.ndcg_at_k(np.array([[1, 7]]), [np.array([7])], 2) == pytest.approx(1 / L3)


def test_map():
    ap0 = (1 / 2 + 2 / 3) / 3        # precision at the two hits, over min(3, 3)
    assert ev.map_at_k(REC, REL, 3) == pytest.approx((ap0 + 0) / 2)
    assert ev.map_at_k(np.array([[1, 7, 8]]), [np.array([7, 8, 9, 10])], 3) == pytest.approx((1 / 2 + 2 / 3) / 3)


def test_k_longer_than_lists_counts_misses():
    assert ev.precision_at_k(np.array([[7]]), [np.array([7])], 2) == pytest.approx(0.5)


def test_coverage_and_gini():
    rec = np.array([[1, 2], [1, 3], [1, -1]])
    assert ev.coverage(rec, 6) == pytest.approx(3 / 6)
    # counts over 4 items: [0, 1, 1, 3] -> Σ(2i-n-1)x = (-3)0 + (-1)1 + (1)1 + (3)3 = 9; n·Σx = 4·5
    assert ev.gini(rec, 4) == pytest.approx(9 / 20)
    assert ev.gini(np.array([[1, 2], [3, 4]]), 4) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        ev.gini(rec, 2)


class _Fixed:
    """A hand-written recommender: predicts 3.0; recommends items by descending id."""

    def predict(self, users, items):
        return np.full(len(users), 3.0, np.float32)

    def recommend(self, users, k, exclude=None):
        banned = set(zip(*exclude)) if exclude is not None else set()
        rows = [[i for i in (13, 12, 11, 10) if (u, i) not in banned][:k] for u in users]
        rows = [r + [-1] * (k - len(r)) for r in rows]
        return np.array(rows), np.zeros((len(users), k), np.float32)


def _frame(rows):
    return pd.DataFrame(rows, columns=[c.USER_ID, c.ITEM_ID, c.RATING])


def test_evaluate_on_hand_made_frames():
    train = _frame([(1, 13, 5), (2, 10, 4)])
    test = _frame([(1, 12, 4), (1, 10, 2), (2, 11, 1)])
    out = ev.evaluate(_Fixed(), train, test, k=2)
    assert out["rmse"] == pytest.approx(math.sqrt((1 + 1 + 4) / 3))
    assert out["mae"] == pytest.approx((1 + 1 + 2) / 3)
    # user 1 gets [12, 11] (13 excluded): hit at rank 1; user 2 gets [13, 12]: no hit
    assert out["precision_at_2"] == pytest.approx((1 / 2 + 0) / 2)
    assert out["recall_at_2"] == pytest.approx((1 / 2 + 0) / 2)
    assert out["hit_rate_at_2"] == pytest.approx(0.5)
    assert out["ndcg_at_2"] == pytest.approx((1 / (1 + 1 / L3) + 0) / 2)
    assert out["coverage_at_2"] == pytest.approx(3 / 4)
    # min_rating keeps only test ratings >= 4 as relevant: user 2 has none and drops out
    strict = ev.evaluate(_Fixed(), train, test, k=2, min_rating=4)
    assert strict["precision_at_2"] == pytest.approx(1 / 2)


def _random_fit(seed: int, n_users: int, density: float):
    """(train, test, a one-epoch dot model on train) from random ratings of 30 items."""
    rng = np.random.default_rng(seed)
    df = _frame([(u, i, float(rng.integers(1, 6))) for u in range(n_users) for i in range(30)
                 if rng.random() < density])
    train, test = df.iloc[::2], df.iloc[1::2]
    rec = Recommender.fit(*(train[col].to_numpy() for col in (c.USER_ID, c.ITEM_ID, c.RATING)),
                          for_kind("dot_bias", loss="mse", epochs=1), device="cpu")
    return train, test, rec


def test_evaluate_runs_on_a_real_recommender():
    train, test, rec = _random_fit(0, 20, 0.5)
    out = ev.evaluate(rec, train, test, k=5)
    assert set(out) == {"rmse", "mae", "precision_at_5", "recall_at_5", "ndcg_at_5", "map_at_5",
                        "hit_rate_at_5", "coverage_at_5", "gini_at_5"}
    assert all(np.isfinite(v) for v in out.values())


def test_most_rated_popularity_is_the_floor_recommender():
    from tasks.learning.evaluate import baseline_metrics
    from tasks.learning.popularity import MostRated

    train = pd.DataFrame({c.USER_ID: [1, 1, 2, 2, 3, 3, 3], c.ITEM_ID: [10, 20, 10, 30, 10, 20, 40],
                          c.RATING: [5.0, 3.0, 4.0, 2.0, 3.0, 1.0, 4.0]})
    pop = MostRated(train)
    ids, _ = pop.recommend(np.array([1, 2, 9]), 3, exclude=(train[c.USER_ID], train[c.ITEM_ID]))
    assert ids.tolist() == [[30, 40, -1], [20, 40, -1], [10, 20, 30]]  # by count, ties by id; rated left out
    np.testing.assert_allclose(pop.predict([1, 1, 1], [10, 20, 99]), [4.0, 2.0, 22 / 7], rtol=1e-6)
    test = pd.DataFrame({c.USER_ID: [1, 2], c.ITEM_ID: [30, 40], c.RATING: [4.0, 3.0]})
    got = baseline_metrics(train, test, k=2)
    assert got["hit_rate_at_2"] == 1.0 and got["rmse"] == pytest.approx(np.sqrt(((4 - 2) ** 2 + (3 - 4) ** 2) / 2))


def test_max_users_ranks_a_fixed_sample_and_keeps_every_rating_for_the_error():
    train, test, rec = _random_fit(1, 40, 0.4)
    users = ev.ranking_users(test, 10)
    assert len(users) == 10 and np.all(np.diff(users) > 0) and set(users) <= set(test[c.USER_ID])
    assert np.array_equal(users, ev.ranking_users(test.sample(frac=1, random_state=3), 10))  # same users every time
    assert len(ev.ranking_users(test, 0)) == len(ev.ranking_users(test, 1000)) == test[c.USER_ID].nunique()
    sampled = ev.evaluate(rec, train, test, k=5, max_users=10)
    mine = test[test[c.USER_ID].isin(users)]
    by_hand = ev.evaluate(rec, train, mine, k=5)
    everyone = ev.evaluate(rec, train, test, k=5)
    # ranking metrics are those of the sampled users; the rating error and the catalogue use every test row
    for key in ("precision_at_5", "recall_at_5", "ndcg_at_5", "map_at_5", "hit_rate_at_5"):
        assert sampled[key] == pytest.approx(by_hand[key])
    assert sampled["rmse"] == pytest.approx(everyone["rmse"]) and sampled["mae"] == pytest.approx(everyone["mae"])
    n_catalogue = len(np.union1d(train[c.ITEM_ID], test[c.ITEM_ID]))
    recs, _ = rec.recommend(users, 5, exclude=(train[c.USER_ID].to_numpy(), train[c.ITEM_ID].to_numpy()))
    assert sampled["coverage_at_5"] == pytest.approx(ev.coverage(recs, n_catalogue))
    # the popularity floor ranks the same users
    assert ev.baseline_metrics(train, test, k=5, max_users=10)["ndcg_at_5"] == pytest.approx(
        ev.baseline_metrics(train, mine, k=5)["ndcg_at_5"])


def test_rating_metrics_give_a_timed_model_the_test_ratings_times():
    class Timed:
        config = for_kind("embedding_nn", time_features=True)

        def predict(self, users, items, times=None):
            self.times = times
            return np.full(len(users), 3.0)

    test = pd.DataFrame({c.USER_ID: [1, 2], c.ITEM_ID: [5, 6], c.RATING: [3.0, 5.0],
                         c.RATED_AT: pd.to_datetime([0, 86_400], unit="s")})
    model = Timed()
    assert ev.rating_metrics(model, test) == {"rmse": pytest.approx(math.sqrt(2)), "mae": 1.0}
    np.testing.assert_array_equal(model.times, [0, 86_400])
    model.config = for_kind("embedding_nn", time_features=False)   # a model without time input is not given them
    ev.rating_metrics(model, test)
    assert model.times is None
