"""Similar items for every catalogue item: earned by co-ratings where enough users rated both, else metadata.

A pair (i, j) co-rated by at least MIN_CO_RATERS users scores
    (1 - MODEL_WEIGHT) * co-rating similarity(i -> j) + MODEL_WEIGHT * cosine(model vector i, model vector j)
with source 'ratings'. The co-rating similarity is G_ij / (G_ii^ASYMMETRY * G_jj^(1 - ASYMMETRY)), where G_ij
counts the users who rated both items, each with weight 1/(their number of ratings): a heavy rater who rated
700 movies does not make all of them look alike. ASYMMETRY = 0.5 would be the cosine and 1 the share of i's
raters who also rated j; in between, a neighbour many people rated ranks a little higher than under the
cosine (what users of i went on to rate), and the value stays within [0, 1]. The minimum support keeps two
rare items rated by the same one or two people out of each other's lists (their similarity would be 1.0 on no
evidence). Every other pair scores METADATA_WEIGHT * metadata similarity (genre cosine times
exp(-|year gap| / YEAR_SCALE)) with source 'metadata', so an item without ratings (a new release) still gets
neighbours, and an item with few co-raters has its list filled after the rated neighbours.
Measured (bench/results/published_quality.md, item-kNN from the published table against plain cosine
co-occurrence): the settings were chosen on random holdout seeds 10-11 and temporal cutoffs 0.70 and 0.75
(bench/bench_similar_rule.py), and reported on seeds 0-2 and the 0.80 cutoff.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy import sparse

from tasks.core import contract as c
from tasks.learning.model_inputs import release_year

MIN_CO_RATERS = 3        # a ratings neighbour needs at least this many users who rated both items
ASYMMETRY = 0.7          # power of the item's own rater norm in the co-rating similarity (0.5: cosine)
MODEL_WEIGHT = 0.1       # share of the model's item-vector cosine in a ratings neighbour's similarity
METADATA_WEIGHT = 0.01   # a metadata match counts as a similarity of at most this much
YEAR_SCALE = 10.0        # years: the metadata similarity halves at about 7 years apart
UNKNOWN_YEAR = 0.5       # year factor when either release year is unknown
_BLOCK_CELLS = 1 << 24   # items-by-catalogue floats computed at once (64 MiB per matrix)


def metadata_similarity(genres: np.ndarray, years: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Metadata similarity [len(rows), n] of items `rows` against all n: genre cosine x year closeness."""
    g = (genres / np.maximum(np.linalg.norm(genres, axis=1, keepdims=True), 1e-12)).astype(np.float32)  # [n, 19]
    sim = g[rows] @ g.T                                                                # [r, n]
    return sim * _year_closeness(years, rows)


def _year_closeness(years: np.ndarray, rows: np.ndarray) -> np.ndarray:
    # exp(-|gap| / YEAR_SCALE) looked up by whole-year gap: release years are whole numbers, and a table
    # lookup over [r, n] cells costs a fraction of as many exps (59k x 59k cells at ML-25M size)
    known = ~np.isnan(years)
    if not known.any():
        return np.full((len(rows), len(years)), UNKNOWN_YEAR, np.float32)
    y = np.where(known, years, 0).astype(np.int32)
    span = int(y[known].max() - y[known].min())
    table = np.exp(-np.arange(span + 1) / YEAR_SCALE).astype(np.float32)
    table = np.append(table, np.float32(UNKNOWN_YEAR))                                 # index span+1: unknown
    gap = np.abs(y[rows][:, None] - y[None, :])
    gap[~(known[rows][:, None] & known[None, :])] = span + 1
    return table[gap]


def _movie_meta(movies: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = movies[c.ITEM_ID].to_numpy(np.int64)
    order = np.argsort(ids, kind="stable")
    genres = movies[list(c.GENRE_COLUMNS)].to_numpy(dtype=np.float64)[order]
    return ids[order], genres, release_year(movies)[order]


def _rating_matrices(ratings: pd.DataFrame, item_ids: np.ndarray):
    """(binary, user-normalised) CSC user x item matrices over catalogue columns, and co-rater norms."""
    col = np.searchsorted(item_ids, ratings[c.ITEM_ID].to_numpy(np.int64))
    col = np.clip(col, 0, max(len(item_ids) - 1, 0))
    known = len(item_ids) > 0
    keep = known & (item_ids[col] == ratings[c.ITEM_ID].to_numpy(np.int64)) if known else np.zeros(len(col), bool)
    users, row = np.unique(ratings[c.USER_ID].to_numpy(np.int64)[keep], return_inverse=True)
    col = col[keep]
    shape = (len(users), len(item_ids))
    binary = sparse.csc_matrix((np.ones(len(row), np.float32), (row, col)), shape=shape)
    binary.sum_duplicates()
    binary.data[:] = 1.0
    per_user = np.asarray(binary.sum(axis=1)).ravel()
    weight = sparse.diags((1.0 / np.sqrt(np.maximum(per_user, 1))).astype(np.float32))
    normalised = (weight @ binary).tocsc()
    norms = np.sqrt(np.asarray(normalised.multiply(normalised).sum(axis=0)).ravel())   # [I]
    return binary, normalised, norms


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def similar_items(ratings: pd.DataFrame, movies: pd.DataFrame, k: int = 20,
                  model_vectors: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Top-k neighbours of every catalogue item: (item_id, rank, similar_item_id, similarity, source).

    model_vectors: (item_ids, vectors [n, d]) of the similarity model; items it does not know count 0.
    """
    item_ids, genres, years = _movie_meta(movies)
    n = len(item_ids)
    if n < 2:
        return pd.DataFrame({col: [] for col in (c.ITEM_ID, c.RANK, c.SIMILAR_ITEM_ID, c.SIMILARITY, c.SOURCE)})
    binary, normalised, norms = _rating_matrices(ratings, item_ids)
    counts = np.asarray(binary.sum(axis=0)).ravel()
    unit = None
    if model_vectors is not None and MODEL_WEIGHT > 0:
        ids, vectors = (np.asarray(a) for a in model_vectors)
        unit = np.zeros((n, vectors.shape[1]), np.float32)
        pos = np.searchsorted(item_ids, ids)
        ok = (pos < n) & (item_ids[np.clip(pos, 0, n - 1)] == ids)
        unit[pos[ok]] = _unit(vectors[ok].astype(np.float32))
    # popularity breaks metadata ties: among equally similar items the more-rated one first
    tie = 1e-3 * np.log1p(counts) / max(np.log1p(counts.max()), 1.0)
    k = min(k, n - 1)
    by_item, binary, normalised_by_item, normalised = (binary.T.tocsr(), binary.tocsr(),
                                                       normalised.T.tocsr(), normalised.tocsr())
    # norms are sqrt(G_ii): the co-rating similarity divides by G_ii^ASYMMETRY * G_jj^(1 - ASYMMETRY)
    own, other = norms ** (2 * ASYMMETRY), norms ** (2 - 2 * ASYMMETRY)

    def block_top(rows):
        co_raters = (by_item[rows] @ binary).toarray()                                    # [r, n]
        rated = (normalised_by_item[rows] @ normalised).toarray()
        rated /= np.maximum(np.outer(own[rows], other), 1e-12)                            # [r, n] similarity
        rated *= 1 - MODEL_WEIGHT
        if unit is not None:
            rated += MODEL_WEIGHT * (unit[rows] @ unit.T)
        meta = metadata_similarity(genres, years, rows)
        meta *= METADATA_WEIGHT * (1 + tie[None, :])
        from_ratings = (co_raters >= MIN_CO_RATERS) & (rated > meta)
        score = np.where(from_ratings, rated, meta)
        score[np.arange(len(rows)), rows] = -np.inf                                      # never itself
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(score, top, 1)
        order = np.lexsort((top, -top_scores), axis=1)                                   # score desc, then id
        top = np.take_along_axis(top, order, 1)
        return top, np.take_along_axis(score, top, 1), ~np.take_along_axis(from_ratings, top, 1)

    # blocks of items-by-catalogue cells; numpy and scipy's sparse products release the GIL, so threads
    # use every core (the catalogue-squared work is what dominates at ML-25M size)
    block = max(1, _BLOCK_CELLS // n)
    starts = range(0, n, block)
    with ThreadPoolExecutor(max_workers=max(1, min(len(starts), os.cpu_count() or 1))) as pool:
        parts = list(pool.map(lambda s: block_top(np.arange(s, min(n, s + block))), starts))
    out_items, out_sims, out_meta = zip(*parts)
    top, sims, meta_rows = (np.concatenate(x) for x in (out_items, out_sims, out_meta))
    df = pd.DataFrame({
        c.ITEM_ID: np.repeat(item_ids, k),
        c.RANK: np.tile(np.arange(1, k + 1, dtype=np.int32), n),
        c.SIMILAR_ITEM_ID: item_ids[top.reshape(-1)],
        c.SIMILARITY: np.clip(sims.reshape(-1), -1.0, 1.0).astype(np.float32),
        c.SOURCE: np.where(meta_rows.reshape(-1), c.SIMILARITY_FROM_METADATA, c.SIMILARITY_FROM_RATINGS),
    })
    keep = df[c.SIMILARITY].to_numpy() > 0   # a neighbour must be similar in something
    return df[keep].sort_values([c.ITEM_ID, c.RANK], kind="stable", ignore_index=True).pipe(_dense_ranks)


def _dense_ranks(df: pd.DataFrame) -> pd.DataFrame:
    df[c.RANK] = (df.groupby(c.ITEM_ID).cumcount() + 1).astype(np.int32)
    return df


def metadata_neighbours(movies: pd.DataFrame, items: np.ndarray, among: np.ndarray,
                        k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(ids [len(items), k'], similarities [len(items), k']): the k items of `among` most similar by metadata
    to each of `items`, most similar first (ties: lower id)."""
    item_ids, genres, years = _movie_meta(movies)
    among = np.intersect1d(among, item_ids)
    k = min(k, len(among))
    if k == 0 or len(items) == 0:
        return np.empty((len(items), 0), np.int64), np.empty((len(items), 0))
    rows = np.searchsorted(item_ids, items)
    cols = np.searchsorted(item_ids, among)
    sim = metadata_similarity(genres, years, rows)[:, cols]                                # [n, A]
    order = np.lexsort((np.broadcast_to(among, sim.shape), -sim), axis=1)[:, :k]
    return among[order], np.take_along_axis(sim, order, 1)
