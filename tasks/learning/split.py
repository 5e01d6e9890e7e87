"""Making train/valid/test splits of the ratings: four strategies (stored and reused by tasks/stores/split_store.py).

A split is identified by its parameters and the content hash of the ratings (`split_id`), written once
under `<home>/splits/<split_id>/` and reused by every later training and evaluation. Validation data
is always carved out of the training part, never out of the test part.

Every assignment is vectorised numpy (one sort at most) and keyed on a hash of (user, item, seed), so
a split depends on the ratings and the spec only, not on the order of the rows.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from tasks.core import contract as c
from tasks.core.settings import Paths
from tasks.stores.split_store import Split, SplitSpec, is_stored, load, split_id, store


def ratings_hash(ratings: pd.DataFrame) -> str:
    """Content hash of a ratings frame (row-order independent), for callers without a lake data hash."""
    row_hashes = pd.util.hash_pandas_object(ratings[list(c.RATINGS_COLUMNS)], index=False).to_numpy()
    return hashlib.sha256(np.sort(row_hashes).tobytes()).hexdigest()[:16]


# --- assignment --------------------------------------------------------------------------------

def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread uint64 per input (numpy wraps on overflow, as intended)."""
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _row_keys(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random uint64 per (user, item) that depends on the seed but not on row order."""
    x = (users.astype(np.uint64) << np.uint64(32)) | items.astype(np.uint64)
    salt = _mix64(np.array([seed], dtype=np.uint64))[0]
    return _mix64(x ^ salt)


def unix_seconds(rated_at: pd.Series) -> np.ndarray:
    """Timestamps as int64 unix seconds, whether stored as integers or datetimes."""
    if pd.api.types.is_datetime64_any_dtype(rated_at):
        if getattr(rated_at.dt, "tz", None) is not None:
            rated_at = rated_at.dt.tz_convert("UTC").dt.tz_localize(None)
        return rated_at.astype("datetime64[s]").to_numpy().astype(np.int64)
    return rated_at.to_numpy().astype(np.int64)


def _bits(n: int) -> int:
    return max(int(n).bit_length(), 1)


def _packed_by_user(codes: np.ndarray, n_users: int, *minor: tuple[np.ndarray, int]) -> np.ndarray:
    """A uint64 per row that orders rows by user code, then by the `minor` (uint64 key, bits) pairs.

    Packing everything into one integer lets np.sort do the work (np.lexsort or np.argsort is 5-10x
    slower at 25M rows). When the bits do not fit, the row's position in a lexsort order stands in.
    """
    packed, used = codes.astype(np.uint64), _bits(n_users)
    for key, bits in minor:
        packed = (packed << np.uint64(bits)) | key
        used += bits
    if used > 64:
        order = np.lexsort(tuple(k for k, _ in reversed(minor)) + (codes,))
        packed = np.empty(len(codes), np.uint64)
        packed[order] = np.arange(len(codes), dtype=np.uint64)
    return packed


def _parts_per_user(packed: np.ndarray, codes: np.ndarray, n_test: np.ndarray, n_valid: np.ndarray,
                    from_end: bool = False) -> np.ndarray:
    """Part codes: per user the n_test first (or last) rows in packed order are test, the next n_valid valid.

    No argsort and no scatter: sort the packed values once, read each user's cut values off the sorted
    array ([U] lookups) and compare every row with its user's cuts.
    """
    ordered = np.sort(packed)
    sizes = np.bincount(codes)                                  # [U]; codes are 0..U-1, user-major in `ordered`
    ends = np.cumsum(sizes)
    starts = ends - sizes

    def beyond(count: np.ndarray) -> np.ndarray:
        """Rows among the first (last) `count` of their user."""
        pos = ends - count if from_end else starts + count - 1
        cut = ordered[np.clip(pos, 0, len(ordered) - 1)]
        inside = packed >= cut[codes] if from_end else packed <= cut[codes]
        return inside & (count > 0)[codes]

    test = beyond(n_test)
    part = beyond(n_test + n_valid).astype(np.int8)            # 1 = valid for now
    part[test] = 2
    return part


def _round(x: np.ndarray | float) -> np.ndarray:
    """Round half up (numpy's round is half-to-even, which makes counts jump oddly)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def _smallest(key: np.ndarray, n: int) -> np.ndarray:
    """Mask of the n smallest keys (keys are distinct), in O(N) with a partition instead of a sort."""
    if n <= 0:
        return np.zeros(len(key), bool)
    if n >= len(key):
        return np.ones(len(key), bool)
    return key <= np.partition(key, n - 1)[n - 1]


def _assign_random(users, items, spec: SplitSpec) -> np.ndarray:
    key = _row_keys(users, items, spec.seed)
    n_test = int(_round(len(key) * spec.test_fraction))
    n_valid = int(_round((len(key) - n_test) * spec.valid_fraction))
    test = _smallest(key, n_test)
    part = _smallest(key, n_test + n_valid).astype(np.int8)  # 1 = valid for now
    part[test] = 2
    return part


def _assign_user_fraction(users, items, spec: SplitSpec) -> np.ndarray:
    key = _row_keys(users, items, spec.seed)
    codes, uniques = pd.factorize(users)
    key_bits = 64 - _bits(len(uniques))
    packed = _packed_by_user(codes, len(uniques), (key >> np.uint64(64 - key_bits), key_bits))
    size = np.bincount(codes)
    n_test = np.minimum(_round(size * spec.test_fraction), size - 1)        # [U]; keep one rating in train
    n_valid = np.minimum(_round((size - n_test) * spec.valid_fraction), size - n_test - 1)
    return _parts_per_user(packed, codes, n_test, n_valid)


def _assign_temporal(seconds: np.ndarray, spec: SplitSpec) -> np.ndarray:
    cutoff = spec.cutoff
    if cutoff is None:
        cutoff = int(np.quantile(seconds, 1 - spec.test_fraction, method="higher"))
    test = seconds >= cutoff
    if test.all():
        raise ValueError(f"temporal split: cutoff {cutoff} leaves no training ratings")
    part = np.where(test, 2, 0).astype(np.int8)
    if spec.valid_fraction > 0:
        train_seconds = seconds[~test]
        valid_cutoff = int(np.quantile(train_seconds, 1 - spec.valid_fraction, method="higher"))
        if valid_cutoff > train_seconds.min():  # never hand all of train to valid
            part[~test & (seconds >= valid_cutoff)] = 1
    return part


def _assign_leave_last_k(users, items, seconds: np.ndarray, spec: SplitSpec) -> np.ndarray:
    codes, uniques = pd.factorize(users)
    t = (seconds - seconds.min()).astype(np.uint64)
    item_codes, item_uniques = pd.factorize(items, sort=True)  # ties in time: the larger item id is "later"
    packed = _packed_by_user(codes, len(uniques), (t, _bits(int(t.max()))),
                             (item_codes.astype(np.uint64), _bits(len(item_uniques))))
    size = np.bincount(codes)
    k_test = np.minimum(spec.k, size - 1)                                   # [U]; keep one rating in train
    k_valid = np.minimum(spec.k, size - 1 - k_test) if spec.valid_fraction > 0 else np.zeros_like(size)
    return _parts_per_user(packed, codes, k_test, k_valid, from_end=True)


def assign_parts(ratings: pd.DataFrame, spec: SplitSpec) -> np.ndarray:
    """Part code per row: 0 train, 1 valid, 2 test."""
    missing = [col for col in c.RATINGS_COLUMNS if col not in ratings.columns]
    if missing:
        raise ValueError(f"ratings: missing column(s) {missing}; expected {list(c.RATINGS_COLUMNS)}")
    if len(ratings) == 0:
        raise ValueError("ratings: empty, nothing to split")
    users = ratings[c.USER_ID].to_numpy().astype(np.int64)
    items = ratings[c.ITEM_ID].to_numpy().astype(np.int64)
    if users.min() < 0 or items.min() < 0 or users.max() >= 2**32 or items.max() >= 2**32:
        raise ValueError(f"ratings: {c.USER_ID} and {c.ITEM_ID} must be in 0..2**32-1")
    if spec.strategy == "random":
        return _assign_random(users, items, spec)
    if spec.strategy == "user_fraction":
        return _assign_user_fraction(users, items, spec)
    seconds = unix_seconds(ratings[c.RATED_AT])
    if spec.strategy == "temporal":
        return _assign_temporal(seconds, spec)
    return _assign_leave_last_k(users, items, seconds, spec)


def make_split(ratings: pd.DataFrame, spec: SplitSpec, data_hash: str | None = None) -> Split:
    """Split the ratings (contract columns) into train/valid/test; the id is known when data_hash is given."""
    part = assign_parts(ratings, spec)
    frame = ratings[list(c.RATINGS_COLUMNS)]
    pick = lambda code: frame[part == code].reset_index(drop=True)  # noqa: E731
    return Split(spec=spec, train=pick(0), valid=pick(1), test=pick(2), data_hash=data_hash)


def get_or_create(paths: Paths, ratings: pd.DataFrame, spec: SplitSpec, data_hash: str) -> Split:
    """The stored split for (spec, data_hash) if there is one (`reused=True`), else make and store it."""
    sid = split_id(spec, data_hash)
    if is_stored(paths, sid):
        return load(paths, sid)
    split = make_split(ratings, spec, data_hash)
    store(paths, split, data_hash)
    return split
