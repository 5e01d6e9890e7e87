"""Sharded scoring: users split into id ranges, each range scored independently (on any worker).

A shard reads its inputs itself (the model from the registry; from the lake only its own users' rows of
`users` and `ratings`), so a distributed task runner ships a few numbers per shard, not DataFrames or
models. Shards score the users the model has learnt; the users it has not (scored from side info or
popularity, which look at every rating) are scored once in the calling process with `score_cold`.
The shards' rows plus those equal the unsharded scoring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core import contract as c
from tasks.stores import lake
from tasks.registry import versions as registry
from tasks.publishing import score_tables
from tasks.core.settings import Paths


def user_ranges(user_ids, shards: int) -> list[tuple[int, int]]:
    """`shards` contiguous, inclusive user-id ranges with about equal numbers of users (fewer if few users)."""
    ids = np.unique(np.asarray(user_ids, dtype=np.int64))
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    if len(ids) == 0:
        return []
    parts = [p for p in np.array_split(ids, min(shards, len(ids))) if len(p)]
    return [(int(p[0]), int(p[-1])) for p in parts]


def known_and_cold(rec, user_ids) -> tuple[np.ndarray, np.ndarray]:
    """(ids the model has learnt, ids it has not), each sorted and unique."""
    ids = np.unique(np.asarray(user_ids, dtype=np.int64))
    known = rec.known_users(ids)
    return ids[known], ids[~known]


def _no_rows() -> pd.DataFrame:
    return pd.DataFrame({c.USER_ID: pd.Series(dtype="int64"), c.RANK: pd.Series(dtype="int32"),
                         c.ITEM_ID: pd.Series(dtype="int64"), c.SCORE: pd.Series(dtype="float32"),
                         c.SOURCE: pd.Series(dtype="object")})


def read_shard(paths: Paths, lo: int, hi: int, data_hash: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ratings, users) rows of the users lo <= user_id <= hi only, filtered as the lake's files are read."""
    ratings = lake.read(paths, c.RATINGS, user_range=(lo, hi), data_hash=data_hash)
    users = lake.read(paths, c.USERS, user_range=(lo, hi), data_hash=data_hash)
    return ratings, users


def score_shard(paths: Paths, kind: str, version: str, lo: int, hi: int, n: int,
                data_hash: str | None = None, new_items: list[int] | None = None, device: str | None = None) -> pd.DataFrame:
    """Top-n recommendations for the users with lo <= user_id <= hi that the model has learnt.

    Reads only those users' rows (of snapshot `data_hash`, else the live one) and the catalogue; the rows
    equal the unsharded scoring's for the same users (a learnt user's list depends on their own ratings
    and on which items nobody has rated yet, `new_items`, found once by the caller).
    """
    rec, _ = registry.load_for_scoring(paths, kind, version, device=device)
    ratings, users = read_shard(paths, lo, hi, data_hash)
    mine = users[rec.known_users(users[c.USER_ID].to_numpy())]
    if mine.empty:
        return _no_rows()
    movies = lake.read(paths, c.MOVIES, data_hash=data_hash)   # the catalogue: new items' metadata neighbours
    return score_tables.score_recommendations(rec, ratings, mine[c.USER_ID].to_numpy(), n, users_df=mine,
                                              movies_df=movies, new_items=np.asarray(new_items or [], np.int64))


def new_items(movies: pd.DataFrame, ratings: pd.DataFrame) -> list[int]:
    """Catalogue items without any rating (what every shard needs to know of the other shards' ratings)."""
    return score_tables.unrated_items(movies, ratings).tolist()


def score_cold(rec, ratings: pd.DataFrame, users_df: pd.DataFrame, cold_ids, n: int) -> pd.DataFrame:
    """Top-n for the users the model has not learnt, scored once on every rating and user (as unsharded)."""
    cold_ids = np.asarray(cold_ids, dtype=np.int64)
    if len(cold_ids) == 0:
        return _no_rows()
    return score_tables.score_recommendations(rec, ratings, cold_ids, n, users_df=users_df)


def plan(users, shards: int) -> tuple[list[int], list[int]]:
    """(lows, highs) of the user-id ranges to score as separate tasks; empty when shards <= 1 (score in one go)."""
    if shards <= 1:
        return [], []
    ranges = user_ranges(users, shards)
    return [lo for lo, _ in ranges], [hi for _, hi in ranges]


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The shards' rows as one table in the published order (user_id, rank)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return _no_rows()
    return pd.concat(frames, ignore_index=True).sort_values([c.USER_ID, c.RANK], kind="stable", ignore_index=True)
