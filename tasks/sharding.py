"""Sharded scoring: users split into id ranges, each range scored independently (on any worker).

A shard reads its inputs itself (the model from the registry, ratings and users from the lake), so a
distributed task runner ships three numbers per shard, not DataFrames or models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks import contract as c
from tasks import lake, registry
from tasks import score_tables
from tasks.settings import Paths


def user_ranges(user_ids, shards: int) -> list[tuple[int, int]]:
    """`shards` contiguous, inclusive user-id ranges with about equal numbers of users (fewer if few users)."""
    ids = np.unique(np.asarray(user_ids, dtype=np.int64))
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    if len(ids) == 0:
        return []
    parts = [p for p in np.array_split(ids, min(shards, len(ids))) if len(p)]
    return [(int(p[0]), int(p[-1])) for p in parts]


def score_shard(paths: Paths, kind: str, version: str, lo: int, hi: int, n: int) -> pd.DataFrame:
    """Top-n recommendations for the users with lo <= user_id <= hi (same rows as the unsharded scoring)."""
    rec, _ = registry.load_for_scoring(paths, kind, version)
    ratings = lake.read(paths, c.RATINGS)
    users = lake.read(paths, c.USERS)
    movies = lake.read(paths, c.MOVIES)
    mine = users[(users[c.USER_ID] >= lo) & (users[c.USER_ID] <= hi)]
    return score_tables.score_recommendations(rec, ratings, mine[c.USER_ID].to_numpy(), n, users_df=users,
                                              movies_df=movies)


def plan(users, shards: int) -> tuple[list[int], list[int]]:
    """(lows, highs) of the user-id ranges to score as separate tasks; empty when shards <= 1 (score in one go)."""
    if shards <= 1:
        return [], []
    ranges = user_ranges(users, shards)
    return [lo for lo, _ in ranges], [hi for _, hi in ranges]


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The shards' rows as one table in the published order (user_id, rank)."""
    return pd.concat(frames, ignore_index=True).sort_values([c.USER_ID, c.RANK], kind="stable", ignore_index=True)
