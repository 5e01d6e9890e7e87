"""Lookup latency by warehouse storage version: the same live warehouse copied into v1.0 and v2.0 storage.

python bench/bench_storage_compat.py --home DIR [--rounds 100]
DIR is a data home with a live publication (e.g. from bench/bench_publish.py --home DIR). Copies its
warehouse into both storage formats (COPY FROM DATABASE), then times query_top10_for_user and
query_similar_items_for_item through tasks.core.sql on one read-only connection per file (DuckDB threads=1),
the two files and two queries interleaved in shuffled blocks of 10 random ids so machine load hits
all of them alike. Prints one JSON line per (storage, query) with p25/p50/p90 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STORAGE_VERSIONS = ("v1.0.0", "v2.0.0")


def copy_into(source: Path, out: Path, version: str) -> None:
    """A copy of the warehouse file `source` written in storage `version`."""
    import duckdb

    con = duckdb.connect(config={"storage_compatibility_version": version})
    try:
        con.execute("attach $path as source (read_only)", {"path": str(source)})
        con.execute("attach $path as copy", {"path": str(out)})
        con.execute("copy from database source to copy")
        con.execute("checkpoint copy")
    finally:
        con.close()


def main(argv=None) -> int:
    import duckdb
    import numpy as np

    from tasks.core import contract as c
    from tasks.core import sql
    from tasks.core.settings import Paths

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-storage-") as tmp:
        cons = {}
        for version in STORAGE_VERSIONS:
            path = Path(tmp) / f"{version}.duckdb"
            copy_into(Paths(args.home.resolve()).warehouse, path, version)
            cons[version] = duckdb.connect(str(path), read_only=True, config={"threads": 1})
        first = cons[STORAGE_VERSIONS[0]]
        ids = {"query_top10_for_user": (c.USER_ID, [r[0] for r in sql.rows(first, "query_published_users")]),
               "query_similar_items_for_item": (c.ITEM_ID, [r[0] for r in sql.rows(first, "query_published_items")])}
        ms = {(v, q): [] for v in STORAGE_VERSIONS for q in ids}
        for _ in range(args.rounds):
            blocks = list(ms)
            rng.shuffle(blocks)
            for version, query in blocks:
                key, pool = ids[query]
                for i in rng.choice(pool, size=10):
                    t0 = time.perf_counter()
                    rows = sql.rows(cons[version], query, {key: int(i)})
                    ms[(version, query)].append((time.perf_counter() - t0) * 1000)
                    assert len(rows) == 10, (query, i, len(rows))
        for con in cons.values():
            con.close()
    for (version, query), values in ms.items():
        a = np.asarray(values)
        print(json.dumps({"bench": "storage_compat", "storage_version": version, "query": query,
                          "p25_ms": round(float(np.percentile(a, 25)), 3), "p50_ms": round(float(np.median(a)), 3),
                          "p90_ms": round(float(np.percentile(a, 90)), 3), "queries": len(a)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
