"""Query latency from a separate read-only process: top-10 with titles for a user, similar items for an item.

python bench/bench_query.py --home DIR [--queries 1000]
DIR is a data home with a live publication (e.g. from bench/bench_publish.py --home DIR); without
--home one is built first (ingest + train + publish, minutes on a small CPU). The timing runs in a child
process that opens the warehouse read-only, as a consumer would: one long-lived connection, 1,000 random
ids per query (after 20 warm-up queries), plus the cost of opening a fresh connection per request; once
with DuckDB threads=1 (recommended for point lookups) and once with the default thread count.
Prints one JSON line per query with p50/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def percentiles(ms: list[float]) -> dict:
    """p50, p99, mean and max of a list of milliseconds."""
    import numpy as np

    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "max_ms": round(float(a.max()), 3), "queries": len(a)}


def reader(warehouse: Path, n_queries: int, seed: int, threads: int = 0) -> list[dict]:
    """Time the consumer queries on one read-only connection (this runs in the child process)."""
    import duckdb
    import numpy as np

    from tasks.core import contract as c
    from tasks.core import sql

    rng = np.random.default_rng(seed)
    # threads=1 suits point lookups: no worker hand-off per query (matters most on a busy machine)
    config = {"threads": threads} if threads else {}
    con = duckdb.connect(str(warehouse), read_only=True, config=config)
    users = [r[0] for r in con.sql(sql.load("query_published_users")).fetchall()]
    items = [r[0] for r in con.sql(sql.load("query_published_items")).fetchall()]
    out = []
    for name, key, ids in (("query_top10_for_user", c.USER_ID, users),
                           ("query_similar_items_for_item", c.ITEM_ID, items)):
        picks = rng.choice(ids, size=n_queries + 20)
        ms = []
        for j, i in enumerate(picks):
            t0 = time.perf_counter()
            rows = sql.rows(con, name, {key: int(i)})
            dt = (time.perf_counter() - t0) * 1000
            assert len(rows) == 10, (name, i, len(rows))
            if j >= 20:
                ms.append(dt)
        out.append({"bench": "query", "query": name, "connection": "long-lived",
                    "duckdb_threads": threads or "default", **percentiles(ms)})
    con.close()
    ms = []
    for i in rng.choice(users, size=200):
        t0 = time.perf_counter()
        fresh = duckdb.connect(str(warehouse), read_only=True, config=config)
        sql.rows(fresh, "query_top10_for_user", {c.USER_ID: int(i)})
        fresh.close()
        ms.append((time.perf_counter() - t0) * 1000)
    out.append({"bench": "query", "query": "query_top10_for_user", "connection": "fresh per query",
                "duckdb_threads": threads or "default", **percentiles(ms)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)    # child mode: DuckDB threads
    ap.add_argument("--reader", type=Path, default=None, help=argparse.SUPPRESS)  # child mode: warehouse path
    args = ap.parse_args(argv)
    if args.reader:
        for row in reader(args.reader, args.queries, args.seed, args.threads):
            print(json.dumps(row), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-query-") as tmp:
        home = args.home
        if home is None:
            from bench.bench_publish import build

            home = Path(tmp) / "home"
            build(home, epochs=1)
        from tasks.core.settings import Paths

        warehouse = Paths(home.resolve()).warehouse
        for threads in (1, 0):  # one child per DuckDB thread setting (a process can't mix them per file)
            child = [sys.executable, str(Path(__file__).resolve()), "--reader", str(warehouse),
                     "--queries", str(args.queries), "--seed", str(args.seed), "--threads", str(threads)]
            subprocess.run(child, cwd=REPO, check=True)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
