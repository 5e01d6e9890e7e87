"""The item-item term of the dot model's lists (models/item_item.py) and how the Recommender blends it in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import item_item
import dataclasses

from models import config as cfg
from models import recipes
from models.config import ItemItem
from models.recipes import for_kind
from models.recommender import Recommender

L2 = ItemItem().l2


def test_adjacent_pairs_count_neighbours_in_each_users_time_order():
    # user 0 rated items 2, 0, 1 at times 5, 1, 3 (so in order 0, 1, 2); user 1 rated 1 then 2, with 0 at a tie
    users = np.array([0, 0, 0, 1, 1, 1])
    items = np.array([2, 0, 1, 1, 2, 0])
    times = np.array([5, 1, 3, 7, 9, 7])     # user 1: items 0 and 1 tie at 7 (item order breaks it), then 2
    got = item_item.adjacent_pairs(users, items, times, 3, window=1)
    expected = np.zeros((3, 3))
    for a, b in ((0, 1), (1, 2), (0, 1), (1, 2)):   # user 0: 0-1, 1-2; user 1: 0-1, 1-2
        expected[a, b] += 1
        expected[b, a] += 1
    np.testing.assert_array_equal(got, expected)
    wide = item_item.adjacent_pairs(users, items, times, 3, window=2)
    assert wide[0, 2] == 2 and wide[2, 0] == 2 and np.trace(wide) == 0   # 0 and 2 are two apart for both


def test_fit_is_edlae_in_closed_form():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 6)) < 0.4).astype(np.float64)
    users, items = np.nonzero(x)
    b, weight = item_item.fit(users, items, np.zeros(len(users)), 6, window=0, l2=L2)
    gram = x.T @ x
    p = np.linalg.inv(gram + np.diag(L2 + item_item.DROPOUT / (1 - item_item.DROPOUT) * np.diag(gram)))
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(b.numpy(), expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(weight.numpy(), np.maximum(x.sum(0), 1) ** item_item.POPULARITY, rtol=1e-6)
    # the users' rows are counted a chunk at a time: a chunk smaller than the users gives the same matrix
    old, item_item.USER_CHUNK = item_item.USER_CHUNK, 7
    try:
        again, _ = item_item.fit(users, items, np.zeros(len(users)), 6, window=0, l2=L2)
    finally:
        item_item.USER_CHUNK = old
    np.testing.assert_array_equal(again.numpy(), b.numpy())


def test_time_adjacent_pairs_pull_items_rated_together_closer():
    # items 0..3 are each co-rated alike; item 1 is always rated right after item 0, item 2 long after it
    users = np.repeat(np.arange(20), 3)
    items = np.tile([0, 1, 2], 20)
    items[np.arange(0, 60, 3)[10:]] = 3            # half the users rated 3 instead of 0
    times = np.tile([0, 1, 100], 20)
    plain, _ = item_item.fit(users, items, times, 4, window=0, l2=L2)
    timed, _ = item_item.fit(users, items, times, 4, window=1, l2=L2)
    assert timed[0, 1] - timed[0, 2] > plain[0, 1] - plain[0, 2]


def test_fit_part_keeps_the_most_rated_items_only():
    users = np.array([0, 1, 2, 0, 1, 0, 3])
    items = np.array([4, 4, 4, 2, 2, 0, 1])          # counts: 4 -> 3, 2 -> 2, 0 and 1 -> 1
    part = item_item.fit_part(users, items, np.zeros(len(users)), 5, window=0, max_items=2, l2=L2)
    assert part["items"].tolist() == [2, 4] and part["b"].shape == (2, 2)
    full = item_item.fit_part(users, items, np.zeros(len(users)), 5, window=0, max_items=10, l2=L2)
    assert full["items"].tolist() == [0, 1, 2, 3, 4]


def test_blend_weight_zero_is_the_dot_order_and_a_weight_moves_co_rated_items_up():
    part = {"items": torch.arange(3), "b": torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
            "weight": torch.ones(3)}
    dot = torch.tensor([[0.0, 0.1, 0.3, 0.2]])      # item 3 is outside the term (scores 0 there)
    history = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # rated item 0, which B ties to item 1
    alone = item_item.blend(dot, history, part, 0.0)
    assert torch.argsort(alone[0, 1:], descending=True).tolist() == [1, 2, 0]   # 2, 3, 1 by the dot score
    unrated = alone[0, 1:]
    assert abs(float(unrated.mean())) < 1e-6 and abs(float(unrated.std(unbiased=False)) - 1) < 1e-5
    mixed = item_item.blend(dot, history, part, 2.0)
    assert int(torch.argmax(mixed[0, 1:])) == 0     # item 1 now first
    flat = item_item.blend(dot, torch.zeros(1, 4), part, 2.0)   # no history: the term is constant, adds nothing
    torch.testing.assert_close(flat, item_item.blend(dot, torch.zeros(1, 4), part, 0.0))


def _fit(weight: float, window: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 600
    users, items = rng.integers(1, 41, n), rng.integers(1, 31, n)
    keep = np.unique(users * 100 + items, return_index=True)[1]
    users, items = users[keep], items[keep]
    config = for_kind("dot_bias", loss="softmax", n_factors=8, epochs=2, item_item_weight=weight,
                      item_item_window=window)
    times = rng.integers(0, 10_000, len(users))
    return Recommender.fit(users, items, np.full(len(users), 4.0), config, times=times, device="cpu"), users, items


def test_the_recommender_blends_the_term_into_its_lists_and_keeps_it_when_saved(tmp_path):
    rec, users, items = _fit(0.5)
    assert rec.item_term is not None and rec.item_term["b"].shape == (len(rec.item_ids), len(rec.item_ids))
    rated = (users, items)
    ids, scores = rec.recommend(np.array([1, 2, 3]), 5, exclude=rated)
    for u, row in zip((1, 2, 3), ids):
        assert not set(row) & set(items[users == u])     # never what the user rated
    torch.manual_seed(0)
    alone = Recommender(dataclasses.replace(rec.config, item_item=None), rec.model,
                        rec.user_ids, rec.item_ids, device="cpu")
    plain, _ = alone.recommend(np.arange(1, 41), 5, exclude=rated)
    blended, _ = rec.recommend(np.arange(1, 41), 5, exclude=rated)
    assert (plain != blended).any()                   # the term changes some lists
    again = Recommender.load(rec.save(tmp_path / "m.pt"))
    np.testing.assert_array_equal(again.recommend(np.array([1, 2, 3]), 5, exclude=rated)[0], ids)
    np.testing.assert_allclose(again.scores(np.array([1, 2]), np.array([3, 4]), exclude=rated),
                               rec.scores(np.array([1, 2]), np.array([3, 4]), exclude=rated))


def test_the_terms_l2_is_the_configs_and_a_file_saved_before_that_key_says_the_l2_it_was_fitted_with(tmp_path):
    rec, users, items = _fit(0.5, window=0)                                          # co-ratings only: no times
    stiffer = Recommender.fit(users, items, np.full(len(users), 4.0),
                              dataclasses.replace(rec.config, item_item=dataclasses.replace(
                                  rec.config.item_item, l2=50 * rec.config.item_item.l2)),
                              device="cpu")
    assert stiffer.item_term["b"].abs().sum() < rec.item_term["b"].abs().sum()   # a larger λ shrinks B
    payload = torch.load(rec.save(tmp_path / "m.pt"), weights_only=True)
    # as format 3 saved it: the old flat 26-field config, before the item_item_l2 key
    payload["format"] = "lensflow-recommender/3"
    legacy = {**_legacy_fields(), **payload["config"], "kind": "dot_bias"}
    payload["config"] = {k: v for k, v in legacy.items() if k != "item_item_l2"}
    torch.save(payload, tmp_path / "old.pt")
    old = Recommender.load(tmp_path / "old.pt")
    assert old.config.item_item.l2 == 200.0
    torch.testing.assert_close(old.item_term["b"], rec.item_term["b"])


def test_without_times_the_term_counts_co_ratings_only():
    rec, users, items = _fit(0.5, window=0)
    config = rec.config
    no_times = Recommender.fit(users, items, np.full(len(users), 4.0), config, device="cpu")
    torch.testing.assert_close(no_times.item_term["b"], rec.item_term["b"])


def _legacy_fields() -> dict:
    """Every field of the old flat ModelConfig with its old default (format 1-3 files hold all of them)."""
    return dict(kind="dot_bias", n_factors=50, layers=[100], dropout=0.1, epochs=5, lr=5e-3, wd=0.1, l2=0.0,
                batch_size=1024, loss="mse", n_negatives=0, rating_weight=0.0, popularity_boost=0.0,
                y_range=[0.0, 5.5], seed=42, use_side_info=False, rating_input=False, id_dropout=0.0, eval_users=0,
                serving_epochs=0, sparse_grad=False, item_item_weight=0.0, item_item_window=1,
                item_item_items=5000, item_item_l2=400.0, extra={})


@pytest.mark.parametrize("kind, overrides, message", [
    ("embedding_nn", {"item_item_weight": 0.1}, "'item_item_weight' does not apply to embedding_nn"),
    ("dot_bias", {"loss": "mse", "item_item_weight": 0.1}, "'item_item_weight' applies to loss 'softmax' only"),
    ("dot_bias", {"item_item_weight": -1.0}, "item_item_weight must be a number > 0"),
    ("dot_bias", {"item_item_window": 1.5}, "item_item_window must be a whole number"),
    ("dot_bias", {"item_item_items": 0}, "item_item_items must be a whole number >= 1"),
    ("dot_bias", {"item_item_l2": 0}, "item_item_l2 must be a number > 0"),
    ("dot_bias", {"item_item_weight": 0, "item_item_window": 2}, "need item_item_weight > 0"),
])
def test_item_item_values_no_fit_can_use_are_refused(kind, overrides, message):
    with pytest.raises(ValueError, match=message):
        for_kind(kind, **overrides)


def test_weight_zero_turns_the_blend_off_and_a_weight_on_a_recipe_without_one_adds_the_block():
    assert for_kind("dot_bias", item_item_weight=0).item_item is None
    assert "item_item_window" not in cfg.flat(for_kind("dot_bias", item_item_weight=0))
    added = for_kind("dot_bias", loss="softmax", item_item_weight=0.2, n_factors=8)   # from the recipe's block
    assert added.item_item == dataclasses.replace(recipes.RANKING.item_item, weight=0.2)
    plain = for_kind("dot_bias", loss="mse")
    assert plain.item_item is None


def test_the_ranking_default_has_the_term_and_side_features_and_the_large_recipe_neither():
    from models.recipes import LARGE_CATALOGUE

    ranking = for_kind("dot_bias")
    assert ranking.item_item.weight > 0 and ranking.use_side_info
    assert for_kind("dot_bias", loss="mse").item_item is None
    large = {k: v for k, v in LARGE_CATALOGUE["dot_bias"].items() if k not in ("eval_users", "serving_epochs")}
    large = for_kind("dot_bias", **large)
    assert large.item_item is None and not large.use_side_info   # the 25M recipe as it was measured
