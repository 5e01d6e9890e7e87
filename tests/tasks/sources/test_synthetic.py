"""The synthetic generator writes valid MovieLens 100k files with learnable structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.core import contract as c
from tasks.sources import movielens as ml
from tasks.sources import synthetic


def test_small_set_is_valid_movielens(synthetic_small):
    t = ml.read_sources(synthetic_small)     # every parsing and validation rule passes
    assert (len(t.ratings), len(t.users), len(t.movies), len(t.genres)) == (6000, 120, 200, 19)
    assert t.ratings[c.RATING].between(1, 5).all()
    assert not t.ratings.duplicated([c.USER_ID, c.ITEM_ID]).any()
    years = t.ratings[c.RATED_AT].dt.year
    assert years.between(1997, 1998).all()
    assert t.movies[c.RELEASE_DATE].isna().any()                     # some empty dates, like ML-100k
    assert t.movies[c.TITLE].str.contains("[éàüñë]", regex=True).any()  # latin-1 accents decoded
    assert (t.movies[list(c.GENRE_COLUMNS)].sum(axis=1) >= 1).all()


def test_exact_file_formats(synthetic_small):
    line = (synthetic_small / "u.data").read_text().splitlines()[0].split("\t")
    assert len(line) == 4 and all(f.isdigit() for f in line)
    item = (synthetic_small / "u.item").read_bytes().decode("latin-1").splitlines()[0].split("|")
    assert len(item) == 24 and set(item[5:]) <= {"0", "1"}
    assert (synthetic_small / "u.genre").read_text().endswith("Western|18\n\n")
    with pytest.raises(UnicodeDecodeError):   # accented titles are latin-1 bytes, not UTF-8
        (synthetic_small / "u.item").read_bytes().decode("utf-8")


def test_deterministic_for_a_seed(tmp_path):
    a = synthetic.generate(tmp_path / "a", 50, 80, 900, seed=3)
    b = synthetic.generate(tmp_path / "b", 50, 80, 900, seed=3)
    d = synthetic.generate(tmp_path / "d", 50, 80, 900, seed=4)
    for name in ("u.data", "u.item", "u.user", "u.genre", "u.occupation"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "u.data").read_bytes() != (d / "u.data").read_bytes()


def test_dense_and_tiny_sets(tmp_path):
    t = ml.read_sources(synthetic.generate(tmp_path / "dense", 10, 40, 200, seed=1))  # density 0.5
    assert len(t.ratings) == 200 and not t.ratings.duplicated([c.USER_ID, c.ITEM_ID]).any()
    with pytest.raises(ValueError, match="unique pairs"):
        synthetic.generate(tmp_path / "x", 10, 10, 60)


def test_popularity_is_skewed_and_ratings_learnable(tmp_path):
    t = ml.read_sources(synthetic.generate(tmp_path / "s", 400, 300, 20_000, seed=0))
    r = t.ratings
    per_item = np.sort(r.groupby(c.ITEM_ID).size().to_numpy())[::-1]
    assert per_item[: len(per_item) // 10].sum() > 0.3 * len(r)       # top 10% of items: > 30% of ratings
    # Item means from half of the users predict the other half far better than the global mean.
    half = r[c.USER_ID] % 2 == 0
    item_mean = r[half].groupby(c.ITEM_ID)[c.RATING].mean()
    test = r[~half & r[c.ITEM_ID].isin(item_mean.index)]
    pred = item_mean.reindex(test[c.ITEM_ID]).to_numpy()
    mse_item = np.mean((pred - test[c.RATING].to_numpy()) ** 2)
    mse_global = np.mean((r[half][c.RATING].mean() - test[c.RATING].to_numpy()) ** 2)
    assert mse_item < 0.9 * mse_global


def test_cli(tmp_path):
    assert synthetic.main(["--out", str(tmp_path / "cli"), "--users", "30", "--items", "40",
                           "--ratings", "300", "--seed", "2"]) == 0
    assert len(ml.read_sources(tmp_path / "cli").ratings) == 300


def _genre_agreement(folder) -> float:
    """Split-half agreement of users' genre tastes: across users, the correlation of each genre's share of
    their odd-numbered and even-numbered ratings, averaged over genres (about 0 when items ignore the user)."""
    t = ml.read_sources(folder)
    r = t.ratings.reset_index(drop=True)
    flags = t.movies.set_index(c.ITEM_ID)[list(c.GENRE_COLUMNS)].astype(float)
    shares = pd.DataFrame(flags.reindex(r[c.ITEM_ID]).to_numpy())
    half = r.groupby(c.USER_ID).cumcount() % 2
    a = shares[half.to_numpy() == 0].groupby(r[c.USER_ID][half == 0].to_numpy()).mean()
    b = shares[half.to_numpy() == 1].groupby(r[c.USER_ID][half == 1].to_numpy()).mean()
    return float(np.nanmean(a.corrwith(b)))


@pytest.mark.parametrize("resampled", [False, True])
def test_taste_makes_users_choose_by_their_factors(tmp_path, monkeypatch, resampled):
    if resampled:  # the large-catalogue draw, forced on a small set
        monkeypatch.setattr(synthetic, "EXACT_TASTE_CELLS", 0)
    args = dict(n_users=400, n_items=1000, n_ratings=24_000, seed=2)
    plain = synthetic.generate(tmp_path / "plain", **args)
    taste = synthetic.generate(tmp_path / "taste", **args, taste=3.0)
    again = synthetic.generate(tmp_path / "again", **args, taste=3.0)
    t = ml.read_sources(taste)
    assert len(t.ratings) == 24_000 and not t.ratings.duplicated([c.USER_ID, c.ITEM_ID]).any()
    counts = t.ratings.groupby(c.USER_ID).size()
    assert counts.equals(ml.read_sources(plain).ratings.groupby(c.USER_ID).size())   # same count per user
    assert (taste / "u.data").read_bytes() == (again / "u.data").read_bytes()           # deterministic
    assert _genre_agreement(taste) > _genre_agreement(plain) + 0.05   # users' halves agree more on genres
