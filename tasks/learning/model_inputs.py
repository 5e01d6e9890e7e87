"""Contract DataFrames in, the models API out: raw-id arrays and side-feature dicts (models/features.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models import features as fx
from tasks.core import contract as c


def user_features(users: pd.DataFrame) -> dict:
    """User side features for the models: raw ids, age, gender and occupation (as strings)."""
    return {
        fx.USER_ID: users[c.USER_ID].to_numpy(np.int64),
        fx.AGE: users[c.AGE].to_numpy(np.float64),
        fx.GENDER: users[c.GENDER].astype(str).to_numpy(),
        fx.OCCUPATION: users[c.OCCUPATION].astype(str).to_numpy(),
    }


def release_year(movies: pd.DataFrame) -> np.ndarray:
    """Release year as float [n]; a missing or unparsable release date gives NaN.

    NaN is the documented fill: the models encode it as the mean year plus a "year unknown" flag.
    """
    dates = pd.to_datetime(movies[c.RELEASE_DATE], errors="coerce")
    return dates.dt.year.to_numpy(dtype=np.float64, na_value=np.nan)


def item_features(movies: pd.DataFrame) -> dict:
    """Item side features for the models: raw ids, genre flags [n, 19] in GENRE_COLUMNS order, year."""
    missing = [col for col in c.GENRE_COLUMNS if col not in movies.columns]
    if missing:
        raise ValueError(f"movies: missing genre column(s) {missing}")
    return {
        fx.ITEM_ID: movies[c.ITEM_ID].to_numpy(np.int64),
        fx.GENRES: movies[list(c.GENRE_COLUMNS)].to_numpy(dtype=bool),
        fx.YEAR: release_year(movies),
    }


def rating_arrays(ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (ratings[c.USER_ID].to_numpy(np.int64), ratings[c.ITEM_ID].to_numpy(np.int64),
            ratings[c.RATING].to_numpy(np.float32))

