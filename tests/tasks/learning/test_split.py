"""Split strategies on hand-written frames, invariants on synthetic data, ids, storage and the warehouse side."""

from __future__ import annotations

import hashlib
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from tasks.core import contract as c
from tasks.learning import split as sp
from tasks.stores import split_store
from tasks.stores.split_store import SplitSpec
from tasks.stores import warehouse
from tasks.stores.checks import CheckFailed

U, I, R, T = c.USER_ID, c.ITEM_ID, c.RATING, c.RATED_AT


def frame(rows) -> pd.DataFrame:
    """Ratings from (user, item, unix seconds) tuples, typed like the lake (timestamps as datetime64[us])."""
    df = pd.DataFrame(rows, columns=[U, I, T])
    df[R] = np.int8(4)
    df[T] = (df[T].to_numpy() * 1_000_000).astype("datetime64[us]")
    return df[list(c.RATINGS_COLUMNS)].astype({U: np.int32, I: np.int32})


def pairs(df: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(df[U].tolist(), df[I].tolist()))


@pytest.fixture(scope="module")
def synthetic_ratings(synthetic_small) -> pd.DataFrame:
    from tasks.sources.movielens import parse_ratings

    return parse_ratings(synthetic_small / "u.data")


# --- spec validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(strategy="by_luck"), "strategy"),
    (dict(test_fraction=0), "test_fraction"),
    (dict(test_fraction=1.0), "test_fraction"),
    (dict(test_fraction="0.2"), "test_fraction"),
    (dict(valid_fraction=-0.1), "valid_fraction"),
    (dict(valid_fraction=float("nan")), "valid_fraction"),
    (dict(strategy="temporal", cutoff=1.5), "cutoff"),
    (dict(strategy="random", cutoff=880_000_000), "cutoff"),
    (dict(strategy="leave_last_k", k=0), "k"),
    (dict(k=True), "k"),
    (dict(seed=-1), "seed"),
])
def test_spec_rejects_bad_fields_naming_them(kwargs, field):
    with pytest.raises(ValueError, match=rf"SplitSpec\.{field}"):
        SplitSpec(**kwargs)


def test_spec_from_dict_rejects_unknown_keys():
    assert SplitSpec.from_dict({"strategy": "temporal", "cutoff": 5}) == SplitSpec("temporal", cutoff=5)
    with pytest.raises(ValueError, match="unknown field.*'ratio'"):
        SplitSpec.from_dict({"strategy": "random", "ratio": 0.3})


def test_make_split_rejects_missing_columns_and_empty_input():
    with pytest.raises(ValueError, match="missing column.*rated_at"):
        sp.make_split(frame([(1, 1, 5)]).drop(columns=[T]), SplitSpec())
    with pytest.raises(ValueError, match="empty"):
        sp.make_split(frame([(1, 1, 5)]).iloc[:0], SplitSpec())


# --- each strategy on a tiny frame ---------------------------------------------------------------------

def test_temporal_with_cutoff_assigns_exactly():
    ratings = frame([(1, 10, 100), (1, 11, 200), (2, 10, 300), (2, 12, 400), (3, 11, 500),
                     (3, 12, 600), (1, 12, 700), (2, 11, 800), (3, 10, 900), (4, 10, 1000)])
    s = sp.make_split(ratings, SplitSpec("temporal", cutoff=800, valid_fraction=0.25))
    # test: at or after the cutoff; valid: the latest quarter of what is left (600, 700)
    assert pairs(s.test) == {(2, 11), (3, 10), (4, 10)}
    assert pairs(s.valid) == {(3, 12), (1, 12)}
    assert pairs(s.train) == {(1, 10), (1, 11), (2, 10), (2, 12), (3, 11)}


def test_temporal_without_cutoff_uses_the_quantile():
    ratings = frame([(u, 1, 100 * u) for u in range(1, 11)])
    s = sp.make_split(ratings, SplitSpec("temporal", test_fraction=0.3, valid_fraction=0))
    assert sorted(s.test[U]) == [8, 9, 10]
    assert len(s.valid) == 0 and sorted(s.train[U]) == list(range(1, 8))


def test_temporal_cutoff_before_all_ratings_is_refused():
    with pytest.raises(ValueError, match="no training ratings"):
        sp.make_split(frame([(1, 1, 100), (1, 2, 200)]), SplitSpec("temporal", cutoff=50))


def test_leave_last_k_assigns_exactly():
    ratings = frame([
        (1, 10, 100), (1, 11, 200), (1, 12, 300), (1, 13, 400), (1, 14, 500),   # 5 ratings
        (2, 20, 100), (2, 22, 300), (2, 21, 300),                                # a tie at the end
        (3, 30, 100), (3, 31, 200),                                              # only two
        (4, 40, 100),                                                            # only one
    ])
    s = sp.make_split(ratings, SplitSpec("leave_last_k", k=2))
    assert pairs(s.test) == {(1, 14), (1, 13), (2, 22), (2, 21), (3, 31)}
    assert pairs(s.valid) == {(1, 12), (1, 11)}
    assert pairs(s.train) == {(1, 10), (2, 20), (3, 30), (4, 40)}
    # k=1: the tie at t=300 goes to the larger item id; valid is the next-to-last
    s1 = sp.make_split(ratings, SplitSpec("leave_last_k", k=1))
    assert pairs(s1.test) == {(1, 14), (2, 22), (3, 31)}
    assert pairs(s1.valid) == {(1, 13), (2, 21)}
    s0 = sp.make_split(ratings, SplitSpec("leave_last_k", k=1, valid_fraction=0))
    assert len(s0.valid) == 0 and pairs(s0.train) == pairs(s1.train) | pairs(s1.valid)


def test_random_counts_and_row_order_independence():
    ratings = frame([(u, i, u * 100 + i) for u in range(1, 6) for i in range(1, 9)])  # 40 ratings
    s = sp.make_split(ratings, SplitSpec("random", test_fraction=0.25, valid_fraction=0.2, seed=3))
    assert s.counts() == {"train": 24, "valid": 6, "test": 10}
    shuffled = sp.make_split(ratings.sample(frac=1, random_state=1), s.spec)
    for part in ("train", "valid", "test"):
        assert pairs(getattr(shuffled, part)) == pairs(getattr(s, part))


def test_user_fraction_per_user_counts_keep_one_in_train():
    rows = [(1, i, i) for i in range(10)] + [(2, i, i) for i in range(5)] + [(3, 0, 0)] + [(4, 0, 0), (4, 1, 1)]
    s = sp.make_split(frame(rows), SplitSpec("user_fraction", test_fraction=0.2, valid_fraction=0.25, seed=1))
    per_user = {part: getattr(s, part)[U].value_counts().to_dict() for part in ("train", "valid", "test")}
    # user 1: 10 -> 2 test, round(8 * 0.25) = 2 valid; user 2: 5 -> 1 test, 1 valid; user 3: 1 -> train;
    # user 4: 2 -> round(0.4) = 0 test, round(0.5) = 1 valid capped to keep one in train -> 1 valid
    assert per_user["test"] == {1: 2, 2: 1}
    assert per_user["valid"] == {1: 2, 2: 1, 4: 1}
    assert per_user["train"] == {1: 6, 2: 3, 3: 1, 4: 1}


def test_integer_and_datetime_timestamps_split_alike():
    ratings = frame([(u, i, (u * 7919 + i * 104729) % 10_000) for u in range(1, 8) for i in range(1, 6)])
    as_int = ratings.assign(**{T: ratings[T].astype("datetime64[s]").astype(np.int64)})
    for spec in (SplitSpec("temporal", test_fraction=0.3), SplitSpec("leave_last_k", k=2)):
        assert pairs(sp.make_split(ratings, spec).test) == pairs(sp.make_split(as_int, spec).test)


# --- invariants on synthetic data --------------------------------------------------------------------

SPECS = [SplitSpec("random"), SplitSpec("user_fraction"), SplitSpec("temporal"), SplitSpec("leave_last_k", k=3)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.strategy)
def test_invariants_on_synthetic(synthetic_ratings, spec):
    check_invariants(synthetic_ratings, spec)


@pytest.mark.realdata
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.strategy)
def test_invariants_on_real_ml100k(real_ml100k, spec):
    from tasks.sources.movielens import parse_ratings

    check_invariants(parse_ratings(real_ml100k / "u.data"), spec)


def check_invariants(synthetic_ratings: pd.DataFrame, spec: SplitSpec) -> None:
    """Disjoint parts, union = input, fractions, valid out of the former train, determinism."""
    s = sp.make_split(synthetic_ratings, spec)
    parts = [pairs(s.train), pairs(s.valid), pairs(s.test)]
    assert sum(map(len, parts)) == len(synthetic_ratings)                       # nothing twice...
    assert set.union(*parts) == pairs(synthetic_ratings)                        # ...nothing lost
    pd.testing.assert_frame_equal(
        pd.concat([s.train, s.valid, s.test]).sort_values([U, I]).reset_index(drop=True),
        synthetic_ratings.sort_values([U, I]).reset_index(drop=True))            # ratings and times intact
    n = len(synthetic_ratings)
    if spec.strategy != "leave_last_k":
        assert abs(len(s.test) / n - spec.test_fraction) < 0.03
        assert abs(len(s.valid) / (n - len(s.test)) - spec.valid_fraction) < 0.03
    else:
        users = synthetic_ratings[U].value_counts()
        assert len(s.test) == int(np.minimum(users - 1, spec.k).sum())
    if spec.strategy in ("user_fraction", "leave_last_k"):
        assert set(s.train[U]) == set(synthetic_ratings[U])                     # every user keeps train
    # valid comes out of the former train, never out of test
    without_valid = sp.make_split(synthetic_ratings, SplitSpec(**{**spec.__dict__, "valid_fraction": 0.0}))
    assert pairs(without_valid.test) == pairs(s.test)
    assert pairs(s.valid) <= pairs(without_valid.train)
    # deterministic
    again = sp.make_split(synthetic_ratings, spec)
    pd.testing.assert_frame_equal(again.test, s.test)
    pd.testing.assert_frame_equal(again.valid, s.valid)


def test_temporal_valid_is_later_than_train_and_test_later_still(synthetic_ratings):
    s = sp.make_split(synthetic_ratings, SplitSpec("temporal"))
    assert s.train[T].max() <= s.valid[T].min() and s.valid[T].max() <= s.test[T].min()


@pytest.mark.parametrize("strategy", ["random", "user_fraction"])
def test_a_different_seed_gives_a_different_split(synthetic_ratings, strategy):
    a = sp.make_split(synthetic_ratings, SplitSpec(strategy, seed=1))
    b = sp.make_split(synthetic_ratings, SplitSpec(strategy, seed=2))
    assert len(a.test) == len(b.test) and pairs(a.test) != pairs(b.test)


# --- ids ---------------------------------------------------------------------------------------------------

def test_split_id_is_stable():
    # pinned: changing the canonical form would orphan every stored split
    canonical = ('{"data_hash":"abc123","params":{"seed":42,"test_fraction":0.2,"valid_fraction":0.1},'
                 '"strategy":"random"}')
    assert split_store.split_id(SplitSpec(), "abc123") == "random-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert split_store.split_id(SplitSpec(), "abc123") == "random-e698a87817deab7e"
    assert split_store.split_id(SplitSpec(), "abc123") == split_store.split_id(SplitSpec.from_dict({}), "abc123")


@pytest.mark.parametrize("other", [
    SplitSpec(seed=43), SplitSpec(test_fraction=0.25), SplitSpec(valid_fraction=0.0),
    SplitSpec("user_fraction"), SplitSpec("temporal"), SplitSpec("leave_last_k"),
])
def test_split_id_changes_with_params(other):
    assert split_store.split_id(other, "abc123") != split_store.split_id(SplitSpec(), "abc123")


def test_split_id_changes_with_data_hash_and_ignores_unused_fields():
    assert split_store.split_id(SplitSpec(), "abc124") != split_store.split_id(SplitSpec(), "abc123")
    assert split_store.split_id(SplitSpec(k=5), "h") == split_store.split_id(SplitSpec(), "h")                 # k unused by random
    assert split_store.split_id(SplitSpec("temporal", seed=1), "h") == split_store.split_id(SplitSpec("temporal", seed=2), "h")
    assert (split_store.split_id(SplitSpec("temporal", cutoff=5, test_fraction=0.3), "h")
            == split_store.split_id(SplitSpec("temporal", cutoff=5), "h"))
    assert split_store.split_id(SplitSpec("temporal", cutoff=5), "h") != split_store.split_id(SplitSpec("temporal", cutoff=6), "h")
    with pytest.raises(ValueError, match="data_hash"):
        split_store.split_id(SplitSpec(), "")


def test_ratings_hash_ignores_row_order_and_sees_content(synthetic_ratings):
    h = sp.ratings_hash(synthetic_ratings)
    assert sp.ratings_hash(synthetic_ratings.sample(frac=1, random_state=0)) == h
    changed = synthetic_ratings.copy()
    changed.loc[0, R] = 1 if changed.loc[0, R] != 1 else 2
    assert sp.ratings_hash(changed) != h


# --- storage and reuse -----------------------------------------------------------------------------------

def test_store_load_round_trip_and_reuse(home, synthetic_ratings):
    spec = SplitSpec("user_fraction", seed=5)
    first = sp.get_or_create(home, synthetic_ratings, spec, "hash1")
    assert not first.reused and first.split_id == split_store.split_id(spec, "hash1")
    folder = home.splits / first.split_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "split.json", "test.parquet", "train.parquet", "valid.parquet"]
    assert [p.name for p in home.splits.iterdir()] == [first.split_id]                # no temporary leftovers
    meta = json.loads((folder / "split.json").read_text())
    assert meta["counts"] == first.counts() and meta[c.DATA_HASH] == "hash1"
    assert meta[c.SPLIT_PARAMS] == spec.params() and meta[c.SPLIT_STRATEGY] == "user_fraction"

    loaded = split_store.load(home, first.split_id)
    assert loaded.spec == spec and loaded.data_hash == "hash1"
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(loaded, part), getattr(first, part))

    # reused, not recomputed: the stored parts come back even for a different frame
    again = sp.get_or_create(home, synthetic_ratings.iloc[:10], spec, "hash1")
    assert again.reused and again.counts() == first.counts()
    # a new data hash is a new split
    other = sp.get_or_create(home, synthetic_ratings.iloc[:100], spec, "hash2")
    assert not other.reused and sum(other.counts().values()) == 100
    assert split_store.stored_ids(home) == sorted([first.split_id, other.split_id])


def test_load_and_current_pointer(home, synthetic_ratings):
    with pytest.raises(FileNotFoundError, match="no stored split 'random-nope'"):
        split_store.load(home, "random-nope")
    assert split_store.current(home) is None
    s = sp.get_or_create(home, synthetic_ratings, SplitSpec(), "h")
    with pytest.raises(FileNotFoundError):
        split_store.set_current(home, "random-nope")
    split_store.set_current(home, s.split_id)
    assert split_store.current(home) == s.split_id


# --- warehouse section -------------------------------------------------------------------------------------

def test_split_tables_section_builds_and_checks_tables(home, synthetic_ratings, tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    warehouse.split_tables(con, home)                                 # nothing stored: creates nothing
    assert con.sql("select count(*) from information_schema.tables").fetchall() == [(0,)]

    a = sp.get_or_create(home, synthetic_ratings, SplitSpec("leave_last_k", k=2), "h")
    b = sp.get_or_create(home, synthetic_ratings, SplitSpec("temporal"), "h")
    split_store.set_current(home, b.split_id)
    warehouse.split_tables(con, home)
    got = con.sql(f"select {c.SPLIT_ID}, {c.SPLIT_STRATEGY}, {c.TRAIN_ROWS}, {c.VALID_ROWS}, {c.TEST_ROWS}, "
                  f"{c.IS_CURRENT}, {c.SPLIT_PARAMS}::varchar from {c.SPLITS} order by {c.SPLIT_ID}").fetchall()
    params = lambda s: json.dumps(s.spec.params(), separators=(",", ":"))  # noqa: E731
    assert got == sorted([
        (a.split_id, "leave_last_k", len(a.train), len(a.valid), len(a.test), False, params(a)),
        (b.split_id, "temporal", len(b.train), len(b.valid), len(b.test), True, params(b)),
    ])
    parts = dict(con.sql(f"select {c.PART}, count(*) from {c.SPLIT_RATINGS} group by all").fetchall())
    assert parts == b.counts()
    test_pairs = con.sql(f"select {U}, {I} from {c.SPLIT_RATINGS} where {c.PART} = 'test'").fetchall()
    assert set(test_pairs) == pairs(b.test)

    # the checks catch a broken table
    con.execute(f"insert into {c.SPLIT_RATINGS} select * from {c.SPLIT_RATINGS} limit 1")
    with pytest.raises(CheckFailed, match="check split_ratings.*more than one part"):
        warehouse.check(con, "split_ratings", c.SPLIT_RATINGS, {"split_id": b.split_id, "parts": list(c.PARTS)})
    con.close()


def test_leave_last_k_when_the_keys_do_not_fit_one_integer():
    # a time range of ~2**60 s leaves too few bits to pack (user, time, item): the lexsort path runs
    small = frame([(u, i, (u * 31 + i * 17) % 13) for u in range(1, 6) for i in range(1, 9)])
    small = small.assign(**{T: small[T].astype("datetime64[s]").astype(np.int64)})
    huge = small.assign(**{T: small[T] * 2**56})
    for spec in (SplitSpec("leave_last_k", k=2), SplitSpec("leave_last_k", k=3, valid_fraction=0)):
        a, b = sp.make_split(small, spec), sp.make_split(huge, spec)
        assert (pairs(a.test), pairs(a.valid)) == (pairs(b.test), pairs(b.valid))
        assert len(a.test) == 5 * spec.k
