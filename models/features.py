"""Side features (user age/gender/occupation, item genres/year/decade) as dense float tables.

Input: plain dicts of numpy arrays keyed by raw id, e.g.
  user_features = {"user_id": ids[n], "age": ints[n], "gender": ["M"|"F"][n], "occupation": codes[n]}
  item_features = {"item_id": ids[n], "genres": bool[n, 19], "year": floats[n] (NaN = unknown)}
Any of the non-id fields may be left out. The key names equal tasks.core.contract's column names
(models/ imports only torch and numpy, so they are spelled here; tests/models/test_recommender.py
test_feature_keys_match_the_contract checks they agree).
"""

from __future__ import annotations

import numpy as np

USER_ID, ITEM_ID = "user_id", "item_id"
AGE, GENDER, OCCUPATION = "age", "gender", "occupation"
GENRES, YEAR = "genres", "year"


def _zscore(x, mean, std):
    x = np.asarray(x, dtype=np.float64)
    z = (x - mean) / std
    return np.nan_to_num(z, nan=0.0)


def _one_hot(values, vocab: list[str]) -> np.ndarray:
    # values outside the vocabulary (new categories) encode as all zeros
    pos = {v: j for j, v in enumerate(vocab)}
    out = np.zeros((len(values), len(vocab)), dtype=np.float32)
    for r, v in enumerate(np.asarray(values).astype(str)):
        j = pos.get(v)
        if j is not None:
            out[r, j] = 1.0
    return out


def fit_user_meta(f: dict) -> dict:
    """Encoding parameters learnt from the training users' features."""
    meta = {"fields": [k for k in (AGE, GENDER, OCCUPATION) if k in f]}
    if AGE in f:
        age = np.asarray(f[AGE], dtype=np.float64)
        meta["age_mean"], meta["age_std"] = float(np.nanmean(age)), float(np.nanstd(age) or 1.0)
    for key in (GENDER, OCCUPATION):
        if key in f:
            meta[key] = sorted(set(np.asarray(f[key]).astype(str).tolist()))
    return meta


def encode_users(f: dict, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids int64 [n], features float32 [n, d]) for a user feature dict."""
    ids = np.asarray(f[USER_ID], dtype=np.int64)
    cols = []
    if AGE in meta["fields"]:
        cols.append(_zscore(f[AGE], meta["age_mean"], meta["age_std"])[:, None])
    for key in (GENDER, OCCUPATION):
        if key in meta["fields"]:
            cols.append(_one_hot(f[key], meta[key]))
    return ids, _stack(cols, len(ids))


def fit_item_meta(f: dict) -> dict:
    """Encoding parameters learnt from the training items' features."""
    meta = {"fields": [k for k in (GENRES, YEAR) if k in f]}
    if GENRES in f:
        meta["n_genres"] = int(np.asarray(f[GENRES]).shape[1])
    if YEAR in f:
        year = np.asarray(f[YEAR], dtype=np.float64)
        meta["year_mean"] = float(np.nanmean(year)) if np.isfinite(year).any() else 0.0
        meta["year_std"] = float(np.nanstd(year) or 1.0) if np.isfinite(year).any() else 1.0
        meta["decades"] = sorted(set(_decades(year[np.isfinite(year)]).tolist()))
    return meta


def _decades(year) -> np.ndarray:
    # "1990" for 1990-1999; "" for a missing year (no decade column is ever "")
    year = np.asarray(year, dtype=np.float64)
    return np.array([str(int(y // 10 * 10)) if np.isfinite(y) else "" for y in year], dtype=object)


def encode_items(f: dict, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids int64 [n], features float32 [n, d]): genre flags, year z-score, year-missing flag, decade flags.

    The decade flags let a linear layer give each era its own offset (a z-score alone is one slope).
    """
    ids = np.asarray(f[ITEM_ID], dtype=np.int64)
    cols = []
    if GENRES in meta["fields"]:
        g = np.asarray(f[GENRES], dtype=np.float32)
        if g.ndim != 2 or g.shape[1] != meta["n_genres"]:
            raise ValueError(f"item feature 'genres' must be [n, {meta['n_genres']}], got {g.shape}")
        cols.append(g)
    if YEAR in meta["fields"]:
        year = np.asarray(f[YEAR], dtype=np.float64)
        cols.append(_zscore(year, meta["year_mean"], meta["year_std"])[:, None])
        cols.append(np.isnan(year).astype(np.float32)[:, None])
        if "decades" in meta:   # absent from the metadata of models saved before decades were added
            cols.append(_one_hot(_decades(year), meta["decades"]))
    return ids, _stack(cols, len(ids))


def _stack(cols, n):
    if not cols:
        return np.zeros((n, 0), dtype=np.float32)
    return np.concatenate([np.asarray(c, dtype=np.float32) for c in cols], axis=1)


def table_by_index(vocab: np.ndarray, ids: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """Feature rows aligned to model indices: row 0 (unknown) and ids without features get the mean row."""
    mean = feats.mean(0) if len(feats) else np.zeros(feats.shape[1], np.float32)
    table = np.tile(mean, (len(vocab) + 1, 1)).astype(np.float32)
    found, rows = lookup(vocab, ids, feats)
    table[1:][found] = rows[found]
    return table


def lookup(query: np.ndarray, ids: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found bool [n], rows float32 [n, d]) of the query ids in a feature table."""
    if len(ids) == 0:
        return np.zeros(len(query), bool), np.zeros((len(query), feats.shape[1]), np.float32)
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], query), 0, len(ids) - 1)
    found = ids[order][pos] == query
    rows = np.zeros((len(query), feats.shape[1]), np.float32)
    rows[found] = feats[order][pos[found]]
    return found, rows
