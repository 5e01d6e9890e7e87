"""Split speed at scale: make_split for each strategy on synthetic ratings (default ML-25M size).

Run: python bench/bench_split.py [--ratings 25000000 --users 162541 --items 59047] [--store]
Prints one JSON line per strategy (seconds for make_split, rows per part); --store also times writing
the split's Parquet files and reading them back, in a temporary data home.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks.core import contract as c  # noqa: E402
from tasks.learning import split as sp  # noqa: E402
from tasks.stores import split_store
from tasks.core.settings import Paths  # noqa: E402


def ratings(n: int, n_users: int, n_items: int, seed: int = 0) -> pd.DataFrame:
    """n unique (user, item) pairs with ratings 1..5 and timestamps over 1995-2019, typed like the lake."""
    rng = np.random.default_rng(seed)
    pairs = np.unique(rng.integers(0, n_users * n_items, int(n * 1.1), dtype=np.int64))
    pairs = rng.permutation(pairs)[:n]
    seconds = rng.integers(789_000_000, 1_574_000_000, len(pairs))
    return pd.DataFrame({
        c.USER_ID: (pairs // n_items + 1).astype(np.int32), c.ITEM_ID: (pairs % n_items + 1).astype(np.int32),
        c.RATING: rng.integers(1, 6, len(pairs)).astype(np.int8),
        c.RATED_AT: (seconds * 1_000_000).astype("datetime64[us]"),
    })


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=25_000_000)
    ap.add_argument("--users", type=int, default=162_541)
    ap.add_argument("--items", type=int, default=59_047)
    ap.add_argument("--store", action="store_true", help="also time store + load of one split")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = ratings(a.ratings, a.users, a.items)
    base = {"rows": len(df), "machine": platform.machine(), "python": platform.python_version()}
    print(json.dumps({**base, "step": "generate", "seconds": round(time.perf_counter() - t0, 2)}), flush=True)
    t0 = time.perf_counter()
    data_hash = sp.ratings_hash(df)
    print(json.dumps({**base, "step": "ratings_hash", "seconds": round(time.perf_counter() - t0, 2)}), flush=True)
    specs = [split_store.SplitSpec("random"), split_store.SplitSpec("user_fraction"), split_store.SplitSpec("temporal"),
             split_store.SplitSpec("leave_last_k", k=5)]
    for spec in specs:
        t0 = time.perf_counter()
        split = sp.make_split(df, spec, data_hash)
        seconds = time.perf_counter() - t0
        print(json.dumps({**base, "step": "make_split", "strategy": spec.strategy, "seconds": round(seconds, 2),
                          **split.counts()}), flush=True)
    if a.store:
        with tempfile.TemporaryDirectory() as tmp:
            paths = Paths(Path(tmp))
            t0 = time.perf_counter()
            split_store.store(paths, split, data_hash)
            t1 = time.perf_counter()
            split_store.load(paths, split.split_id)
            t2 = time.perf_counter()
            print(json.dumps({**base, "step": "store+load", "strategy": split.spec.strategy,
                              "store_seconds": round(t1 - t0, 2), "load_seconds": round(t2 - t1, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
