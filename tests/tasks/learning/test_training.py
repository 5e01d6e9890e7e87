"""Training glue on tiny hand-written frames: features, config, fit, train_and_evaluate."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from models.config import flat

from models import features as fx
from tasks.core import contract as c
from tasks.learning import split as sp
from tasks.stores import split_store
from tasks.learning import training as tr
from tasks.learning import kind_config
from tasks.learning import model_inputs
from tasks.learning import promotion
from tasks.registry import trainings


def users_frame() -> pd.DataFrame:
    return pd.DataFrame({c.USER_ID: np.array([1, 2, 3], np.int32), c.AGE: np.array([24, 53, 33], np.int16),
                         c.GENDER: ["M", "F", "M"], c.OCCUPATION: ["technician", "other", "writer"],
                         c.ZIP_CODE: ["85711", "94043", "32067"]})


def movies_frame(n: int = 3) -> pd.DataFrame:
    dates = [dt.date(1995, 1, 1), None, dt.date(1977, 5, 25)] + [dt.date(1990 + i % 9, 1, 1) for i in range(n - 3)]
    df = pd.DataFrame({c.ITEM_ID: np.arange(1, n + 1, dtype=np.int32), c.TITLE: [f"m{i}" for i in range(n)],
                       c.RELEASE_DATE: dates})
    for j, col in enumerate(c.GENRE_COLUMNS):
        df[col] = (np.arange(n) + j) % 7 == 0
    return df


def block_ratings(n_users: int = 40, n_items: int = 30, seed: int = 0) -> pd.DataFrame:
    """Two taste groups: a user rates items of their own group 5, the others 1 (learnable structure)."""
    rng = np.random.default_rng(seed)
    u, i = np.meshgrid(np.arange(1, n_users + 1), np.arange(1, n_items + 1), indexing="ij")
    u, i = u.ravel(), i.ravel()
    keep = rng.random(len(u)) < 0.6
    u, i = u[keep], i[keep]
    rating = np.where(u % 2 == i % 2, 5, 1).astype(np.int8)
    seconds = rng.integers(880_000_000, 890_000_000, len(u))
    return pd.DataFrame({c.USER_ID: u.astype(np.int32), c.ITEM_ID: i.astype(np.int32), c.RATING: rating,
                         c.RATED_AT: (seconds * 1_000_000).astype("datetime64[us]")})


def test_user_features_match_the_models_keys():
    f = model_inputs.user_features(users_frame())
    assert set(f) == {fx.USER_ID, fx.AGE, fx.GENDER, fx.OCCUPATION}
    assert f[fx.USER_ID].tolist() == [1, 2, 3] and f[fx.AGE].tolist() == [24.0, 53.0, 33.0]
    assert f[fx.GENDER].tolist() == ["M", "F", "M"] and f[fx.OCCUPATION].tolist()[2] == "writer"


def test_item_features_genre_order_and_missing_year():
    movies = movies_frame()
    f = model_inputs.item_features(movies)
    assert f[fx.ITEM_ID].tolist() == [1, 2, 3]
    assert f[fx.GENRES].shape == (3, len(c.GENRE_COLUMNS)) and f[fx.GENRES].dtype == bool
    assert f[fx.GENRES][:, 0].tolist() == [True, False, False]        # column 0 is 'unknown', row 0 has it
    assert f[fx.GENRES][:, 6].tolist() == [False, True, False]        # (1 + 6) % 7 == 0
    assert f[fx.YEAR][0] == 1995 and math.isnan(f[fx.YEAR][1]) and f[fx.YEAR][2] == 1977
    with pytest.raises(ValueError, match="genre column"):
        model_inputs.item_features(movies.drop(columns=[c.GENRE_COLUMNS[3]]))


def test_item_features_accept_datetime_release_dates():
    movies = movies_frame()
    movies[c.RELEASE_DATE] = pd.to_datetime(movies[c.RELEASE_DATE])
    assert model_inputs.item_features(movies)[fx.YEAR][2] == 1977


def test_model_config_applies_overrides_and_refuses_nonsense():
    cfg = kind_config.model_config(c.MODEL_KIND_NN, {"epochs": 2, "use_side_info": True})
    assert (cfg.kind, cfg.train.epochs, cfg.use_side_info) == (c.MODEL_KIND_NN, 2, True)
    with pytest.raises(ValueError, match="model kind"):
        kind_config.model_config("svd")
    with pytest.raises(ValueError, match=r"unknown setting 'epochz' \(did you mean 'epochs'\?\)"):
        kind_config.model_config(c.MODEL_KIND_DOT, {"epochz": 3})
    with pytest.raises(ValueError, match="contradicts"):
        kind_config.model_config(c.MODEL_KIND_DOT, {"kind": c.MODEL_KIND_NN})
    with pytest.raises(ValueError, match="'n_negatives' does not apply to embedding_nn"):
        kind_config.model_config(c.MODEL_KIND_NN, {"n_negatives": 3})


def test_evaluation_and_serving_settings_live_beside_the_model_config_and_out_of_its_fingerprint():
    plan = kind_config.kind_settings(c.MODEL_KIND_DOT, {"epochs": 2, "eval_users": 5, "serving_epochs": 1})
    assert (plan.eval_users, plan.serving_epochs, plan.config.train.epochs) == (5, 1, 2)
    assert plan.config == kind_config.model_config(c.MODEL_KIND_DOT, {"epochs": 2})
    assert trainings.fingerprint(plan.config, "s", "d", "code") == trainings.fingerprint(
        kind_config.kind_settings(c.MODEL_KIND_DOT, {"epochs": 2}).config, "s", "d", "code")   # the same fitted model
    assert trainings.fingerprint(plan.config, "s", "d", "code") != trainings.fingerprint(
        kind_config.model_config(c.MODEL_KIND_DOT, {"epochs": 3}), "s", "d", "code")
    with pytest.raises(ValueError, match="serving_epochs must be a whole number >= 0"):
        kind_config.kind_settings(c.MODEL_KIND_DOT, {"serving_epochs": -1})
    with pytest.raises(ValueError, match="fixed n_factors"):
        kind_config.kind_settings(c.MODEL_KIND_NN, {"n_factors": 0, "serving_epochs": 1})
    with pytest.raises(ValueError, match="unknown setting 'extra'"):
        kind_config.kind_settings(c.MODEL_KIND_DOT, {"extra": {"note": "x"}})   # free notes were never a model setting


def test_fit_learns_the_tiny_structure():
    ratings = block_ratings()
    cfg = kind_config.model_config(c.MODEL_KIND_DOT, {"loss": "mse", "epochs": 30, "n_factors": 4, "batch_size": 64,
                                              "lr": 3e-2, "wd": 0.0})
    rec = tr.fit(ratings, cfg, device="cpu")
    pred = rec.predict(ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy())
    y = ratings[c.RATING].to_numpy(np.float64)
    baseline = np.sqrt(np.mean((y - y.mean()) ** 2))                   # ~2: predicting the mean
    assert np.sqrt(np.mean((pred - y) ** 2)) < 0.5 * baseline
    assert len(rec.history) == 30 and rec.history[0]["valid_loss"] is None


def test_serving_fit_continues_from_the_evaluated_model_for_serving_epochs():
    ratings = block_ratings()
    cfg = kind_config.model_config(c.MODEL_KIND_DOT, {"loss": "mse", "epochs": 30, "n_factors": 4, "batch_size": 64,
                                              "lr": 3e-2, "wd": 0.0})
    with pytest.raises(ValueError, match="needs the evaluated model"):
        tr.fit_for_serving(ratings, cfg, device="cpu", serving_epochs=2)
    evaluated = tr.fit(ratings, cfg, device="cpu")
    served, _, dev = tr.fit_for_serving(ratings, cfg, device="cpu", evaluated=evaluated, serving_epochs=2)
    assert len(served.history) == 2 and dev == "cpu" and served.config == cfg
    users, items = ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy()
    y = ratings[c.RATING].to_numpy(np.float64)

    def rmse(rec):
        return np.sqrt(np.mean((rec.predict(users, items) - y) ** 2))

    # two epochs from the evaluated weights keep what its 30 epochs learnt; two from scratch do not
    two_from_scratch = tr.fit(ratings, kind_config.model_config(c.MODEL_KIND_DOT, {**flat(cfg), "epochs": 2}), device="cpu")
    assert rmse(served) < 0.5 * np.sqrt(np.mean((y - y.mean()) ** 2)) and rmse(served) < rmse(two_from_scratch)
    refit, _, _ = tr.fit_for_serving(ratings, cfg, device="cpu")   # serving_epochs 0: from scratch
    assert len(refit.history) == 30


def test_fit_passes_side_features_to_the_embedding_nn():
    ratings = block_ratings(n_users=3, n_items=3)
    cfg = kind_config.model_config(c.MODEL_KIND_NN, {"epochs": 1, "use_side_info": True})
    rec = tr.fit(ratings, cfg, users=users_frame(), movies=movies_frame(), device="cpu")
    assert rec.side["user_rows"].shape[0] == 3 and rec.side["item_rows"].shape[0] == 3
    assert "year" in rec.side["item_meta"]["fields"] and "occupation" in rec.side["user_meta"]["fields"]


def test_train_and_evaluate_reports_test_and_valid_metrics():
    ratings = block_ratings()
    split = sp.make_split(ratings, split_store.SplitSpec("user_fraction", seed=1), data_hash="tiny")
    cfg = kind_config.model_config(c.MODEL_KIND_DOT, {"loss": "mse", "epochs": 20, "n_factors": 4, "batch_size": 64,
                                              "lr": 3e-2, "wd": 0.0})
    result = tr.train_and_evaluate(split, cfg, users_frame(), movies_frame(30), k=5, device="cpu")
    assert result.split_id == split.split_id and result.device == "cpu"
    # seconds covers the fit (every epoch, timed from its start) and the evaluation after it
    assert len(result.history) == 20 and 0 < result.history[-1]["seconds"] <= result.seconds
    for metrics in (result.metrics, result.valid_metrics):
        assert {"rmse", "mae", "precision_at_5", "recall_at_5", "ndcg_at_5", "hit_rate_at_5"} <= set(metrics)
        assert all(np.isfinite(v) for v in metrics.values())
    # the structure generalises to held-out pairs: far better than predicting the mean
    y = split.test[c.RATING].to_numpy(np.float64)
    assert result.metrics["rmse"] < 0.5 * np.sqrt(np.mean((y - split.train[c.RATING].mean()) ** 2))
    assert len(result.history) == 20 and all(h["valid_loss"] is not None for h in result.history)
    assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]


def test_train_and_evaluate_without_valid_part():
    split = sp.make_split(block_ratings(), split_store.SplitSpec("leave_last_k", k=2, valid_fraction=0))
    cfg = kind_config.model_config(c.MODEL_KIND_DOT, {"loss": "mse", "epochs": 2})
    result = tr.train_and_evaluate(split, cfg, k=5, device="cpu")
    assert result.valid_metrics == {} and result.history[0]["valid_loss"] is None
    assert np.isfinite(result.metrics["rmse"])


def test_a_ranking_model_gets_no_rating_error_and_a_rating_model_does():
    split = sp.make_split(block_ratings(), split_store.SplitSpec("user_fraction", seed=1), data_hash="tiny")
    ranking = tr.train_and_evaluate(split, kind_config.model_config(c.MODEL_KIND_DOT, {"epochs": 2, "n_factors": 4}), k=5)
    rating = tr.train_and_evaluate(split, kind_config.model_config(c.MODEL_KIND_NN, {"epochs": 2}), k=5)
    assert "rmse" not in ranking.metrics and "ndcg_at_5" in ranking.metrics   # its scores are no ratings
    assert {"rmse", "mae", "ndcg_at_5"} <= set(rating.metrics)


def test_large_catalogue_settings_resolve_and_eval_users_ranks_a_sample():
    from models.recipes import LARGE_CATALOGUE
    from tasks.learning import evaluate as ev

    for kind in c.MODEL_KINDS:
        plan = kind_config.kind_settings(kind, LARGE_CATALOGUE[kind])   # valid as `lensflow run --dot-config/--nn-config`
        assert plan.config.train.sparse_grad and plan.eval_users > 0
    assert kind_config.kind_settings(c.MODEL_KIND_DOT, LARGE_CATALOGUE[c.MODEL_KIND_DOT]).config.loss.n_negatives > 0
    split = sp.make_split(block_ratings(), split_store.SplitSpec("user_fraction", seed=1), data_hash="tiny")
    cfg = kind_config.model_config(c.MODEL_KIND_DOT, {"epochs": 2})
    result = tr.train_and_evaluate(split, cfg, k=5, device="cpu", eval_users=5)
    users = ev.ranking_users(split.test, 5)
    mine = split.test[split.test[c.USER_ID].isin(users)]
    seen = pd.concat([split.train, split.valid], ignore_index=True)
    assert result.metrics["ndcg_at_5"] == pytest.approx(ev.evaluate(result.recommender, seen, mine, k=5)["ndcg_at_5"])
    # the promotion floor ranks the same number of users as the model
    floor = promotion.promotion_floor(split, "ndcg_at_5", 5, max_users=5)
    assert floor["ndcg_at_5"] == pytest.approx(
        ev.baseline_metrics(split.train, split.valid[split.valid[c.USER_ID].isin(ev.ranking_users(split.valid, 5))],
                            k=5)["ndcg_at_5"])


def test_a_continued_serving_fit_is_identified_by_the_run_it_continues():
    plain = kind_config.model_config(c.MODEL_KIND_DOT, {})
    assert trainings.serving_fingerprint(plain, "d", "code") == trainings.serving_fingerprint(plain, "d", "code", start_from="r1")
    with pytest.raises(ValueError, match="the run it continues"):
        trainings.serving_fingerprint(plain, "d", "code", serving_epochs=1)
    assert trainings.serving_fingerprint(plain, "d", "code", start_from="r1", serving_epochs=1) != trainings.serving_fingerprint(
        plain, "d", "code", start_from="r2", serving_epochs=1)
    assert trainings.serving_fingerprint(plain, "d", "code", start_from="r1", serving_epochs=1) != trainings.serving_fingerprint(
        plain, "d", "code", start_from="r1", serving_epochs=2)


def test_the_ranking_fit_orders_each_users_ratings_by_their_time_for_the_item_item_term():
    from models import item_item

    ratings = block_ratings()
    config = kind_config.model_config(c.MODEL_KIND_DOT, {"n_factors": 8, "epochs": 1})
    rec = tr.fit(ratings, config)
    blend = config.item_item
    assert blend.weight > 0 and blend.window >= 1
    idx = lambda col, vocab: np.searchsorted(vocab, ratings[col].to_numpy())   # noqa: E731  0-based
    ui, ii = idx(c.USER_ID, rec.user_ids) + 1, idx(c.ITEM_ID, rec.item_ids)
    by_time = item_item.fit_part(ui, ii, sp.unix_seconds(ratings[c.RATED_AT]), len(rec.item_ids),
                                 blend.window, blend.items, l2=blend.l2)
    shuffled = item_item.fit_part(ui, ii, np.random.default_rng(1).permutation(len(ui)), len(rec.item_ids),
                                  blend.window, blend.items, l2=blend.l2)
    np.testing.assert_allclose(rec.item_term["b"].numpy(), by_time["b"].numpy(), rtol=1e-5, atol=1e-7)
    assert not np.allclose(rec.item_term["b"].numpy(), shuffled["b"].numpy())   # the order matters


def test_the_ranking_default_learns_from_side_features_and_scores_a_new_user_by_them():
    # who rates what follows the user's group (odd users mostly rate odd items), and the groups differ in
    # age, gender and occupation: the pipeline's ranking model must learn both from the side features
    rng = np.random.default_rng(3)
    u, i = np.meshgrid(np.arange(1, 41), np.arange(1, 31), indexing="ij")
    u, i = u.ravel(), i.ravel()
    keep = rng.random(len(u)) < np.where(u % 2 == i % 2, 0.8, 0.1)
    ratings = pd.DataFrame({c.USER_ID: u[keep].astype(np.int32), c.ITEM_ID: i[keep].astype(np.int32),
                            c.RATING: np.full(keep.sum(), 4, np.int8)})
    odd = np.arange(1, 41) % 2 == 1
    users = pd.DataFrame({c.USER_ID: np.arange(1, 41, dtype=np.int32), c.AGE: np.where(odd, 20, 60).astype(np.int16),
                          c.GENDER: np.where(odd, "F", "M"), c.OCCUPATION: np.where(odd, "student", "retired"),
                          c.ZIP_CODE: "00000"})
    config = kind_config.model_config(c.MODEL_KIND_DOT, {"n_factors": 8, "epochs": 30, "batch_size": 64})
    assert config.loss.name == "softmax" and config.use_side_info
    rec = tr.fit(ratings, config, users=users, movies=movies_frame(30), device="cpu")
    assert {"user_rows", "item_rows"} <= set(rec.side)
    new = {fx.USER_ID: np.array([900, 901]), fx.AGE: np.array([21.0, 59.0]), fx.GENDER: np.array(["F", "M"]),
           fx.OCCUPATION: np.array(["student", "retired"])}
    ids, _ = rec.recommend(np.array([900, 901]), 5, user_features=new)
    assert (ids[0] % 2 == 1).mean() >= 0.8 and (ids[1] % 2 == 0).mean() >= 0.8   # each gets its group's items


def test_a_mistyped_promotion_metric_names_the_near_miss():
    from tasks.learning import promotion

    with pytest.raises(ValueError, match=r"promotion metric 'ndgc_at_10' \(did you mean 'ndcg_at_10'\?\)"):
        promotion.check_metric("ndgc_at_10")
    assert promotion.check_metric("rmse") == "rmse"


def test_the_library_takes_the_device_as_given_and_never_reads_the_environment(monkeypatch):
    """$LENSFLOW_DEVICE is read at a run's entry (flows/guard.py, flows/cli.py); a step is told the device."""
    monkeypatch.setenv("LENSFLOW_DEVICE", "cuda:7")   # no such GPU: a library read of it would raise
    cfg = kind_config.model_config(c.MODEL_KIND_DOT, {"loss": "mse", "epochs": 1, "n_factors": 4})
    _, _, dev = tr.fit_for_serving(block_ratings(), cfg, device=None)
    assert dev == "cpu"
