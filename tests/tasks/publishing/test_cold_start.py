"""Cold start and similar items on hand-written frames: new users, new items, co-rating support, metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.publishing import cold_start
from tasks.publishing import item_similarity
from tasks.core import contract as c
from tasks.publishing import score_tables as st


def movies(genres: dict[int, tuple[str, ...]], years: dict[int, int | None]) -> pd.DataFrame:
    """A movies frame with the genre flags and release dates the similarity code reads."""
    rows = []
    for item, names in genres.items():
        row = {c.ITEM_ID: item, c.TITLE: f"m{item}",
               c.RELEASE_DATE: None if years.get(item) is None else f"01-Jan-{years[item]}"}
        row.update({col: name in names for col, name in zip(c.GENRE_COLUMNS, c.GENRE_NAMES)})
        rows.append(row)
    return pd.DataFrame(rows)


def ratings(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame({c.USER_ID: [u for u, _ in pairs], c.ITEM_ID: [i for _, i in pairs],
                         c.RATING: 4, c.RATED_AT: pd.Timestamp("2020-01-01")})


USERS = pd.DataFrame({c.USER_ID: [1, 2, 3, 4, 5, 6, 7, 8],
                      c.AGE: [25, 24, 61, 60, 26, 62, 40, None],
                      c.GENDER: ["F", "F", "M", "M", "F", "M", "F", "M"],
                      c.OCCUPATION: ["student", "student", "retired", "retired", "student", "retired", "other",
                                     "other"]})
# users 1-2 (young women, students) rate 10 and 11; users 3-4 (men around 60, retired) rate 20 and 21;
# everyone rates 30, the most-rated item; 5-8 are new sign-ups
LIKES = ratings([(1, 10), (1, 11), (2, 10), (2, 11), (3, 20), (3, 21), (4, 20), (4, 21),
                 (1, 30), (2, 30), (3, 30), (4, 30)])


def test_new_users_get_the_lists_of_people_like_them():
    items, scores = cold_start.demographic_recommend(LIKES, USERS, np.array([5, 6]), 3)
    # 30 (rated by everyone) first for both; then what people of their age, gender and occupation rated
    assert items[0].tolist() == [30, 10, 11] and items[1].tolist() == [30, 20, 21]
    assert (np.diff(scores, axis=1) <= 0).all()


def test_new_users_lists_leave_out_what_they_rated():
    rated = pd.concat([LIKES, ratings([(5, 10)])], ignore_index=True)
    items, _ = cold_start.demographic_recommend(rated, USERS, np.array([5]), 3)
    assert 10 not in items[0]


def test_a_user_without_a_full_profile_gets_plain_most_rated():
    assert cold_start.has_profile(USERS).tolist() == [True] * 7 + [False]   # user 8 has no age


def test_score_recommendations_marks_each_kind_of_new_user():
    from tests.tasks.publishing.test_publish import train_tiny

    model = train_tiny(LIKES)
    recs = st.score_recommendations(model, LIKES, USERS[c.USER_ID].to_numpy(), 3, users_df=USERS)
    source = recs.groupby(c.USER_ID)[c.SOURCE].agg(set)
    assert source[1] == {c.SOURCE_MODEL} and source[5] == {c.SOURCE_SIDE_INFO} and source[8] == {c.SOURCE_POPULARITY}
    assert recs[recs[c.USER_ID] == 8][c.ITEM_ID].iloc[0] == 30   # most-rated first


def test_similar_items_need_enough_co_raters_and_every_item_gets_neighbours():
    # 1 and 2 co-rated by 3 users; 3 and 4 by 2 users only; 5 is unrated (a new release)
    pairs = [(u, i) for u in (1, 2, 3) for i in (1, 2)] + [(u, i) for u in (4, 5) for i in (3, 4)]
    cat = movies({1: ("Drama",), 2: ("Drama",), 3: ("Comedy",), 4: ("Comedy",), 5: ("Comedy",)},
                 {1: 1990, 2: 1991, 3: 1995, 4: 1995, 5: 1996})
    sims = item_similarity.similar_items(ratings(pairs), cat, k=3)
    assert set(sims[c.ITEM_ID]) == {1, 2, 3, 4, 5}                  # every catalogue item has a list
    assert (sims[c.ITEM_ID] != sims[c.SIMILAR_ITEM_ID]).all()
    first = sims[sims[c.RANK] == 1].set_index(c.ITEM_ID)
    assert first.loc[1, c.SIMILAR_ITEM_ID] == 2 and first.loc[1, c.SOURCE] == c.SIMILARITY_FROM_RATINGS
    assert first.loc[1, c.SIMILARITY] > 0.5
    # two co-raters are not enough: 3 and 4 are neighbours by their metadata only, weighted down
    three = sims[sims[c.ITEM_ID] == 3]
    assert set(three[c.SOURCE]) == {c.SIMILARITY_FROM_METADATA}
    assert three[c.SIMILARITY].max() <= item_similarity.METADATA_WEIGHT * 1.01
    assert three[c.SIMILAR_ITEM_ID].iloc[0] == 4                    # same genre, same year
    new = sims[sims[c.ITEM_ID] == 5]
    assert new[c.SIMILAR_ITEM_ID].iloc[0] in (3, 4) and set(new[c.SOURCE]) == {c.SIMILARITY_FROM_METADATA}
    assert (sims.groupby(c.ITEM_ID)[c.SIMILARITY].diff().dropna() <= 0).all()


def test_heavy_raters_count_less_in_the_co_rating_similarity():
    # item 1 and 2: three light users rated both; item 1 and 3: three users who rated everything
    light = [(u, i) for u in (1, 2, 3) for i in (1, 2)]
    heavy = [(u, i) for u in (4, 5, 6) for i in range(1, 13) if i != 2]
    cat = movies({i: ("Drama",) for i in range(1, 13)}, {})
    sims = item_similarity.similar_items(ratings(light + heavy), cat, k=2)
    assert sims[(sims[c.ITEM_ID] == 1) & (sims[c.RANK] == 1)][c.SIMILAR_ITEM_ID].item() == 2


def test_co_rating_similarity_leans_towards_the_neighbour_more_people_went_on_to_rate():
    # X = 1 is rated by users 1-5. Q = 2 by users 1-3 only; P = 3 by users 1-5 and seven more. The cosine
    # would rank Q first (0.71 against 0.47); with ASYMMETRY 0.7 the similarity from X ranks P first
    pairs = [(u, i) for u in (1, 2, 3) for i in (1, 2, 3)] + [(u, i) for u in (4, 5) for i in (1, 3)]
    pairs += [(u, 3) for u in range(6, 13)]
    cat = movies({i: ("Drama",) for i in (1, 2, 3)}, {})
    sims = item_similarity.similar_items(ratings(pairs), cat, k=2)
    got = sims.set_index([c.ITEM_ID, c.SIMILAR_ITEM_ID])[c.SIMILARITY]
    # the definition, by hand: each rater weighted 1 / their number of ratings
    X = np.zeros((13, 4))
    for u, i in pairs:
        X[u, i] = 1
    G = (X / np.maximum(X.sum(1), 1)[:, None]).T @ X
    a, share = item_similarity.ASYMMETRY, 1 - item_similarity.MODEL_WEIGHT
    for i, j in ((1, 2), (1, 3), (2, 1), (3, 1)):
        expected = share * G[i, j] / (G[i, i] ** a * G[j, j] ** (1 - a))
        np.testing.assert_allclose(got[(i, j)], expected, rtol=1e-5)
    first = sims[sims[c.RANK] == 1].set_index(c.ITEM_ID)[c.SIMILAR_ITEM_ID]
    assert first[1] == 3
    assert got[(1, 3)] > got[(3, 1)]              # not symmetric: from a rare item to a popular one is higher
    assert sims[c.SIMILARITY].between(0, 1).all()


def test_an_unrated_item_enters_the_lists_its_metadata_earns():
    from models.recipes import for_kind
    from models.recommender import Recommender

    # users 1-3 like Sci-Fi (items 1-4), users 4-6 like Westerns (items 5-8); item 9 is a new Sci-Fi release
    pairs = [(u, i) for u in (1, 2, 3) for i in (1, 2, 3, 4)] + [(u, i) for u in (4, 5, 6) for i in (5, 6, 7, 8)]
    pairs += [(1, 5), (4, 1)]
    likes = ratings(pairs)
    cat = movies({**{i: ("Sci-Fi",) for i in (1, 2, 3, 4, 9)}, **{i: ("Western",) for i in (5, 6, 7, 8)}},
                 {i: 1990 for i in range(1, 10)})
    config = for_kind(c.MODEL_KIND_DOT, n_factors=8, epochs=30, batch_size=8)
    model = Recommender.fit(likes[c.USER_ID], likes[c.ITEM_ID], likes[c.RATING], config, device="cpu")
    users = np.arange(1, 7)
    recs = st.score_recommendations(model, likes, users, 8, movies_df=cat)
    new = recs[recs[c.ITEM_ID] == 9]
    assert set(new[c.SOURCE]) == {c.SOURCE_METADATA} and set(new[c.USER_ID]) == set(users)
    # its score is the similarity-weighted mean of the user's scores of its metadata neighbours: the Sci-Fi
    # items, equally similar (the Westerns share nothing with it)
    rated = (likes[c.USER_ID].to_numpy(), likes[c.ITEM_ID].to_numpy())   # the item-item term scores from them
    expected = model.scores(users, np.array([1, 2, 3, 4]), exclude=rated).mean(axis=1)
    np.testing.assert_allclose(new.sort_values(c.USER_ID)[c.SCORE].to_numpy(), expected, rtol=1e-5)
    rank = new.set_index(c.USER_ID)[c.RANK]
    assert rank[[2, 3]].max() < rank[[5, 6]].min()   # Sci-Fi fans see it higher than Western fans


def test_scores_match_what_recommend_ranks_with():
    from tests.tasks.publishing.test_publish import train_tiny

    model = train_tiny(LIKES, loss="softmax", popularity_boost=0.25)
    for rated in (None, (np.array([1, 3]), np.array([10, 20]))):          # with and without a history
        items, scores = model.recommend(np.array([1, 3]), 2, exclude=rated)                # [2, 2]
        got = model.scores(np.array([1, 3]), items.reshape(-1), exclude=rated)             # [2, 4]
        np.testing.assert_allclose(np.stack([got[0, :2], got[1, 2:]]), scores, rtol=1e-5)


def test_metadata_similarity_is_genre_cosine_times_year_closeness():
    cat = movies({1: ("Drama", "Comedy"), 2: ("Drama",), 3: ("Comedy",), 4: ("Drama",)},
                 {1: 1990, 2: 2000, 3: 1990, 4: None})
    ids, genres, years = item_similarity._movie_meta(cat)
    sim = item_similarity.metadata_similarity(genres, years, np.array([0, 3]))
    half = 1 / np.sqrt(2)
    expected = [[1.0, half * np.exp(-1.0), half, half * item_similarity.UNKNOWN_YEAR],
                [half * item_similarity.UNKNOWN_YEAR, item_similarity.UNKNOWN_YEAR, 0.0, item_similarity.UNKNOWN_YEAR]]
    np.testing.assert_allclose(sim, expected, rtol=1e-6)


def test_similar_items_do_not_depend_on_how_the_catalogue_is_blocked(monkeypatch):
    rng = np.random.default_rng(0)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(1, 40, 600), rng.integers(1, 60, 600))})
    cat = movies({i: (c.GENRE_NAMES[i % 5],) for i in range(1, 61)}, {i: 1980 + i % 20 for i in range(1, 61)})
    whole = item_similarity.similar_items(ratings(pairs), cat, k=5)
    monkeypatch.setattr(item_similarity, "_BLOCK_CELLS", 7 * 60)       # 7 items a block, on several threads
    blocked = item_similarity.similar_items(ratings(pairs), cat, k=5)
    pd.testing.assert_frame_equal(whole, blocked)
    assert set(whole[c.SOURCE]) == {c.SIMILARITY_FROM_RATINGS, c.SIMILARITY_FROM_METADATA}
