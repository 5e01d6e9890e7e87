"""Scores for the published tables: top-n unrated items per user, top-k similar items per item.

Plain functions on an in-memory Recommender and contract frames; tasks.publishing.publish tags, stages and
checks what they return.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from models import scoring
from models.training_loop import pick_device
from tasks.core import contract as c
from tasks.publishing import cold_start
from tasks.publishing import item_similarity
from tasks.learning import evaluate as ev
from tasks.learning import model_inputs

SOURCE_MODEL, SOURCE_SIDE_INFO, SOURCE_POPULARITY, SOURCE_METADATA = (
    c.SOURCE_MODEL, c.SOURCE_SIDE_INFO, c.SOURCE_POPULARITY, c.SOURCE_METADATA)


def _frame(users, items, scores, source) -> pd.DataFrame:
    """Long rows (user, rank, item, score, source) from [u, n] arrays, dropping -inf padding.

    source: one value for every row, or an array [u, n] of values.
    """
    n = items.shape[1]
    df = pd.DataFrame({
        c.USER_ID: np.repeat(np.asarray(users, dtype=np.int64), n),
        c.RANK: np.tile(np.arange(1, n + 1, dtype=np.int32), len(users)),
        c.ITEM_ID: items.reshape(-1).astype(np.int64),
        c.SCORE: scores.reshape(-1).astype(np.float32),
        c.SOURCE: np.asarray(source).reshape(-1) if np.ndim(source) else source,
    })
    return df[np.isfinite(df[c.SCORE].to_numpy())]


def score_recommendations(rec, ratings: pd.DataFrame, users: np.ndarray, n: int = 50,
                          users_df: pd.DataFrame | None = None, movies_df: pd.DataFrame | None = None,
                          new_items: np.ndarray | None = None) -> pd.DataFrame:
    """Top-n unrated items per user: the model for users it knows, demographics or popularity for the rest.

    With movies_df, catalogue items without any rating (new releases) compete in known users' lists
    with the mean score of their metadata neighbours (source 'metadata'). Users the model does not know get
    demographic popularity when users_df gives their age, gender and occupation (source 'side_info'), else
    plain most-rated popularity (source 'popularity'); see tasks/publishing/cold_start.py. new_items: the unrated
    catalogue items when `ratings` is only part of them (a shard); by default found from `ratings`.
    Returns columns (user_id, rank, item_id, score, source) sorted by (user_id, rank).
    """
    users = np.unique(np.asarray(users, dtype=np.int64))
    exclude = (ratings[c.USER_ID].to_numpy(), ratings[c.ITEM_ID].to_numpy())
    known = rec.known_users(users)
    parts = []
    if known.any():
        items, scores = rec.recommend(users[known], n, exclude=exclude)
        source = np.full(items.shape, c.SOURCE_MODEL, dtype=object)
        if movies_df is not None:
            new = unrated_items(movies_df, ratings) if new_items is None else np.asarray(new_items, np.int64)
            items, scores, source = with_new_items(rec, users[known], items, scores, source, new, movies_df,
                                                   exclude=exclude)
        parts.append(_frame(users[known], items, scores, source))
    cold = users[~known]
    if len(cold):
        profiled = np.zeros(len(cold), bool)
        if users_df is not None:
            rows = users_df[users_df[c.USER_ID].isin(cold)]
            profiled = np.isin(cold, rows[c.USER_ID].to_numpy()[cold_start.has_profile(rows)])
        if profiled.any():
            items, scores = cold_start.demographic_recommend(ratings, users_df, cold[profiled], n)
            parts.append(_frame(cold[profiled], items, scores, c.SOURCE_SIDE_INFO))
        if (~profiled).any():
            items, scores = cold_start.most_rated_recommend(ratings, cold[~profiled], n)
            parts.append(_frame(cold[~profiled], items, scores, c.SOURCE_POPULARITY))
    df = pd.concat(parts, ignore_index=True)
    # -inf padding was dropped per user from the end, so ranks stay 1..m; re-sort once for the table.
    return df.sort_values([c.USER_ID, c.RANK], kind="stable", ignore_index=True)


def with_predicted_ratings(recs: pd.DataFrame, rating, users_df: pd.DataFrame | None = None,
                           movies_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """recs with PREDICTED_RATING after SCORE: the rating model's prediction of each (user, item), clipped to
    the 1-5 scale; users and items it never learnt are predicted from their side features (users_df,
    movies_df). No rating model: the column is null."""
    recs = recs.copy()
    if rating is None:
        recs[c.PREDICTED_RATING] = pd.Series(np.nan, index=recs.index, dtype="float32")
    else:
        users, items = recs[c.USER_ID].to_numpy(np.int64), recs[c.ITEM_ID].to_numpy(np.int64)
        new_users = None if users_df is None else \
            users_df[users_df[c.USER_ID].isin(users[~rating.known_users(users)])]
        new_items = None if movies_df is None else \
            movies_df[movies_df[c.ITEM_ID].isin(items[~rating.known_items(items)])]
        pred = rating.predict(users, items,
                              user_features=None if new_users is None or new_users.empty else model_inputs.user_features(new_users),
                              item_features=None if new_items is None or new_items.empty else model_inputs.item_features(new_items))
        recs[c.PREDICTED_RATING] = ev.clip_rating(pred)
    columns = list(recs.columns)
    columns.insert(columns.index(c.SCORE) + 1, columns.pop(columns.index(c.PREDICTED_RATING)))
    return recs[columns]


NEW_ITEM_NEIGHBOURS = 20   # metadata neighbours whose mean score a new item gets


def unrated_items(movies_df: pd.DataFrame, ratings: pd.DataFrame) -> np.ndarray:
    """Catalogue item ids nobody has rated (sorted)."""
    return np.setdiff1d(movies_df[c.ITEM_ID].to_numpy(np.int64), ratings[c.ITEM_ID].to_numpy(np.int64))


def with_new_items(rec, users, items, scores, source, new: np.ndarray, movies_df: pd.DataFrame, exclude=None):
    """Merge `new` catalogue items (nobody has rated them) into the top-n lists [u, n] of known `users`.

    A new item scores the similarity-weighted mean of the user's scores of its NEW_ITEM_NEIGHBOURS metadata
    neighbours among the items the model knows: for the dot model that is the score of the weighted mean
    neighbour vector and bias, so it enters a list only where the user's taste for items like it beats the
    list's own items. exclude: the (users, items) pairs recommend() was given (the model's scores of an item
    can depend on what the user rated).
    """
    catalogue = movies_df[c.ITEM_ID].to_numpy(np.int64)
    new = new[~rec.known_items(new)]
    if len(new) == 0 or items.shape[1] == 0:
        return items, scores, source
    nbrs, weights = item_similarity.metadata_neighbours(movies_df, new, np.intersect1d(rec.item_ids, catalogue),
                                                        NEW_ITEM_NEIGHBOURS)             # [m, k], [m, k]
    if nbrs.shape[1] == 0:
        return items, scores, source
    cols, where = np.unique(nbrs, return_inverse=True)
    base = rec.scores(users, cols, exclude=exclude)[:, where.reshape(nbrs.shape)]                         # [u, m, k]
    total = weights.sum(axis=1)                                                          # [m]
    with np.errstate(invalid="ignore", divide="ignore"):
        new_scores = ((base * weights[None]).sum(axis=2) / total[None]).astype(np.float32)  # [u, m]
    new_scores[:, total <= 0] = -np.inf          # nothing alike in the catalogue: no evidence to rank it
    all_items = np.concatenate([items, np.broadcast_to(new, (len(users), len(new)))], axis=1)
    all_scores = np.concatenate([scores, new_scores], axis=1)
    all_source = np.concatenate([source, np.full((len(users), len(new)), c.SOURCE_METADATA, dtype=object)], axis=1)
    top = np.argsort(-all_scores, axis=1, kind="stable")[:, :items.shape[1]]
    pick = lambda a: np.take_along_axis(a, top, 1)   # noqa: E731
    return pick(all_items), pick(all_scores), pick(all_source)


def cosine_neighbours(item_ids: np.ndarray, vectors, k: int = 20, device=None,
                      chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k cosine neighbours per item, itself excluded: (item_ids, neighbour_ids[I, k], sims[I, k])."""
    dev = pick_device(device)  # None: CUDA when present, else CPU
    v = torch.as_tensor(np.asarray(vectors), dtype=torch.float32).to(dev)      # [I, d]
    v = torch.nn.functional.normalize(v, dim=1)  # zero rows stay zero: similarity 0, never NaN
    n_items = len(item_ids)
    diagonal = np.arange(n_items)
    exclude = scoring.csr_from_pairs(diagonal, diagonal, n_items)             # each item excludes itself
    cols, sims = scoring.topk(lambda a, b: v[a:b] @ v.T, n_items, n_items, k, exclude=exclude,
                              chunk_size=chunk_size, device=dev)               # [I, k]
    item_ids = np.asarray(item_ids, dtype=np.int64)
    return item_ids, item_ids[cols], np.clip(sims, -1.0, 1.0)


def score_similar_items(rec, k: int = 20, catalogue: np.ndarray | None = None, device=None,
                        ratings: pd.DataFrame | None = None, movies: pd.DataFrame | None = None) -> pd.DataFrame:
    """Top-k similar items per item: (item_id, rank, similar_item_id, similarity, source).

    With ratings and movies (what publish passes): every catalogue item gets neighbours, from co-ratings
    blended with the model's item vectors or from metadata (tasks/publishing/item_similarity.py). Without them: the
    cosine of the model's item vectors alone, for the items it knows (source 'ratings').
    """
    if ratings is not None and movies is not None:
        if catalogue is not None:
            movies = movies[movies[c.ITEM_ID].isin(catalogue)]
        return item_similarity.similar_items(ratings, movies, k, model_vectors=rec.item_embeddings())
    ids, vectors = rec.item_embeddings()
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors)
    if catalogue is not None:  # only catalogue items may appear on either side
        keep = np.isin(ids, catalogue)
        ids, vectors = ids[keep], vectors[keep]
    ids, nbrs, sims = cosine_neighbours(ids, vectors, k, device=device)
    df = pd.DataFrame({
        c.ITEM_ID: np.repeat(ids, nbrs.shape[1]),
        c.RANK: np.tile(np.arange(1, nbrs.shape[1] + 1, dtype=np.int32), len(ids)),
        c.SIMILAR_ITEM_ID: nbrs.reshape(-1),
        c.SIMILARITY: sims.reshape(-1).astype(np.float32),
        c.SOURCE: c.SIMILARITY_FROM_RATINGS,
    })
    df = df[np.isfinite(df[c.SIMILARITY].to_numpy())]
    return df.sort_values([c.ITEM_ID, c.RANK], kind="stable", ignore_index=True)
