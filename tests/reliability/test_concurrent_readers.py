"""Several reader processes query recommendations nonstop through a series of publishes.

Readers of three kinds run at once: a fresh `warehouse.connect_readonly` per query (what the CLI
does), a fresh plain `duckdb.connect(path, read_only=True)` per query, and long-lived connections
kept open for many queries. Every query must succeed, and every answer must come from one
publication that the same file lists in `publications` (no mix). Publish durations are recorded
with and without readers and reported (printed and saved), never asserted: timings on a shared
2-core machine are not a pass/fail matter.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.core import contract as c
from tests.reliability import helpers

REPO = helpers.REPO
N_PUBLISHES = 4

# One reader process. argv: home, stop-file, mode (attach | connect | long), seed.
READER = r"""
import json, random, sys, time
from pathlib import Path
import duckdb
from tasks.core import contract as c
from tasks.core import sql
from tasks.stores import warehouse
from tasks.core.settings import Paths

paths, stop, mode, seed = Paths(Path(sys.argv[1])), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rng = random.Random(seed)
LONG_QUERIES = 150                      # a long-lived connection serves this many queries, then reconnects
stats = {"mode": mode, "queries": 0, "errors": [], "n_errors": 0, "mixed": [], "seen": {}, "connections": 0}
users, con, used = None, None, 0


def connect():
    stats["connections"] += 1
    if mode == "connect":
        return duckdb.connect(str(paths.warehouse), read_only=True)
    return warehouse.connect_readonly(paths)


def one_query(con):
    global users
    if users is None:
        users = [row[0] for row in sql.rows(con, "query_published_users")]
    user = rng.choice(users)
    top = sql.rows(con, "query_top10_for_user", {c.USER_ID: user})
    live = sql.rows(con, "query_live_publication")
    ids = {row[-1] for row in top} | {row[1] for row in live}
    ranks = [row[0] for row in top]
    if len(ids) != 1 or len(live) != 2 or not all(row[3] for row in live) or ranks != list(range(1, len(top) + 1)) \
            or not 1 <= len(top) <= 10:
        stats["mixed"].append({"user": user, "ids": sorted(ids), "live": [list(map(str, r)) for r in live]})
    for i in ids:
        stats["seen"][i] = stats["seen"].get(i, 0) + 1


first = True
want, told = Path(str(stop) + ".want"), False   # the test names the last publication there; say once it is seen
while True:
    last = stop.exists()
    try:
        if con is None:
            con, used = connect(), 0
        one_query(con)
        stats["queries"] += 1
        if not told and want.exists() and want.read_text().strip() in stats["seen"]:
            print("saw", want.read_text().strip(), flush=True)
            told = True
        used += 1
        if mode != "long" or used >= LONG_QUERIES:
            con.close()
            con = None
    except Exception as e:               # any error at all is a failure of the swap design
        stats["n_errors"] += 1
        if len(stats["errors"]) < 5:
            stats["errors"].append(repr(e))
        if con is not None:
            con.close()
            con = None
    if first:
        print("ready", flush=True)
        first = False
    if last:
        break
if con is not None:
    con.close()
print(json.dumps(stats), flush=True)
"""

READERS = [("attach", 1), ("connect", 2), ("long", 3), ("long", 4)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A published home and the tiny model the publishes reuse (scoring is the same work each time)."""
    from tasks.stores import lake

    root = tmp_path_factory.mktemp("readers")
    source = helpers.make_source(root / "src", seed=31, users=200, items=150, ratings=6000)
    paths = helpers.build_published_home(root / "home", source)
    model = helpers.tiny_model(lake.read(paths, c.RATINGS))
    return paths, model


def publish_series(paths, model, n: int) -> list[tuple[str, dict]]:
    out = []
    for k in range(n):
        result = helpers.publish(paths, model, version=str(k + 2))
        out.append((result.publication_id, result.seconds))
    return out


def summarize(series) -> dict:
    totals = [s["total"] for _, s in series]
    swaps = [s["swap"] for _, s in series]
    return {"publishes": len(series), "median_total_s": round(statistics.median(totals), 3),
            "median_swap_s": round(statistics.median(swaps), 3), "max_total_s": round(max(totals), 3)}


def test_readers_never_fail_or_see_a_mix_while_publishes_swap_the_warehouse(world, tmp_path):
    paths, model = world
    quiet = publish_series(paths, model, N_PUBLISHES)           # baseline: no readers

    stop = tmp_path / "stop"
    procs = [subprocess.Popen([sys.executable, "-c", READER, str(paths.home), str(stop), mode, str(seed)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for mode, seed in READERS]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()[-3000:]
        started = time.perf_counter()
        busy = publish_series(paths, model, N_PUBLISHES)
        busy_wall = time.perf_counter() - started
        want = Path(str(stop) + ".want")                        # every reconnecting reader sees the last publication
        want.with_suffix(".tmp").write_text(busy[-1][0])
        os.replace(want.with_suffix(".tmp"), want)
        for p, (mode, _) in zip(procs, READERS):
            if mode != "long":
                assert p.stdout.readline().strip() == f"saw {busy[-1][0]}", p.stderr.read()[-3000:]
        stop.touch()
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    published = {quiet[-1][0]} | {pid for pid, _ in busy}
    for r in reports:
        assert r["n_errors"] == 0, r["errors"]
        assert r["mixed"] == [], r["mixed"][:3]
        assert r["queries"] > 0
        assert set(r["seen"]) <= published, (set(r["seen"]) - published)
    fresh = [r for r in reports if r["mode"] != "long"]
    for r in fresh:  # a reader that reconnects every query sees the publications change under it
        assert len(r["seen"]) >= 2 and busy[-1][0] in r["seen"], r["seen"]
    state = helpers.check_consistent(paths)
    assert state["agree"] and state["served"] == busy[-1][0]

    figures = {
        "readers": [{k: r[k] for k in ("mode", "queries", "n_errors", "connections")}
                    | {"mixed": len(r["mixed"]), "publications_seen": len(r["seen"])} for r in reports],
        "queries_served": sum(r["queries"] for r in reports),
        "errors": sum(r["n_errors"] for r in reports), "mixed": sum(len(r["mixed"]) for r in reports),
        "publish_without_readers": summarize(quiet), "publish_with_readers": summarize(busy),
        "busy_wall_s": round(busy_wall, 2),
    }
    print("\nconcurrent readers:", json.dumps(figures))
    helpers.save_results("concurrent_readers", figures)


def test_long_lived_connection_keeps_its_publication_and_does_not_block_publishes(world):
    """A connection opened before two publishes still answers from its own file, consistently."""
    from tasks.core import sql
    from tasks.stores import warehouse

    paths, model = world
    before = helpers.check_consistent(paths)["served"]
    held = warehouse.connect_readonly(paths)
    try:
        ids = publish_series(paths, model, 2)
        old = {row[1] for row in sql.rows(held, "query_live_publication")}
        listed = {row[0] for row in sql.rows(held, "query_publications")}
    finally:
        held.close()
    assert old == {before} and before in listed
    assert helpers.check_consistent(paths)["served"] == ids[-1][0]
