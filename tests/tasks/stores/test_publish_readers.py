"""Readers in another process see the old publication or the new one: never an error, a lock or a mix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core import contract as c
from tasks.core import sql
from tests.tasks.publishing.test_publish import make_world, publish_world

REPO = Path(__file__).resolve().parents[3]

# Reader process: a fresh read-only connection per round, two queries per round; it reports every
# failure and every round whose rows name more than one publication or an unlisted one.
READER = r"""
import json, sys
from pathlib import Path
import duckdb
from tasks.core import contract as c
from tasks.core import sql

db, stop, user = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
seen, errors, mixed, rounds = {}, [], [], 0
while True:
    last = stop.exists()
    try:
        con = duckdb.connect(str(db), read_only=True)
        try:
            live = sql.rows(con, "query_live_publication")
            top = sql.rows(con, "query_top10_for_user", {c.USER_ID: user})
        finally:
            con.close()
        ids = {row[1] for row in live} | {row[-1] for row in top}
        if len(live) != 2 or len(ids) != 1 or not all(row[3] for row in live) or len(top) != 10:
            mixed.append([live, [row[-1] for row in top]])
        for i in ids:
            seen[i] = seen.get(i, 0) + 1
        if rounds == 0:
            print("ready", flush=True)
        rounds += 1
    except Exception as e:  # any error at all is a failure of the swap design
        errors.append(repr(e))
        if rounds == 0 and len(errors) > 50:
            print("ready", flush=True)
    if last:
        break
print(json.dumps({"seen": seen, "errors": errors[:5], "n_errors": len(errors), "mixed": mixed[:5],
                  "rounds": rounds}), flush=True)
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_small):
    return make_world(tmp_path_factory.mktemp("readers") / "home", synthetic_small)


def test_reader_process_sees_whole_publications_during_publishes(world, tmp_path):
    first = publish_world(world)
    stop = tmp_path / "stop"
    user = int(world.users[c.USER_ID].iloc[0])
    reader = subprocess.Popen([sys.executable, "-c", READER, str(world.paths.warehouse), str(stop), str(user)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        published = [first.publication_id] + [publish_world(world).publication_id for _ in range(3)]
        stop.touch()
        out, err = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
    report = json.loads(out.strip().splitlines()[-1])
    print(report)
    assert report["n_errors"] == 0, report["errors"]
    assert report["mixed"] == []
    assert set(report["seen"]) <= set(published)
    # the reader saw the swaps happen: the first publication and the last one at least
    assert {published[0], published[-1]} <= set(report["seen"])
    assert report["rounds"] >= len(report["seen"])


def test_open_reader_keeps_its_publication_and_never_blocks_a_publish(world):
    from tasks.stores.warehouse import connect_readonly

    before = publish_world(world)
    held = connect_readonly(world.paths)  # stays open across the publish
    try:
        after = publish_world(world)
        old = {row[1] for row in sql.rows(held, "query_live_publication")}
    finally:
        held.close()
    fresh = connect_readonly(world.paths)
    try:
        new = {row[1] for row in sql.rows(fresh, "query_live_publication")}
    finally:
        fresh.close()
    assert old == {before.publication_id}
    assert new == {after.publication_id}
