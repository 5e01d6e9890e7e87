"""The ingest flow end to end under the Prefect test API: ingest, no-op, replace, failed ingest."""

from __future__ import annotations

import shutil

import pytest

from tasks.core import contract as c
from tasks.stores import lake
from tasks.stores import warehouse
from tasks.core.errors import InputError


@pytest.fixture
def ingest(prefect_api):
    from flows.ingest import ingest as flow_fn
    return flow_fn


def counts(paths) -> dict:
    con = warehouse.connect_readonly(paths)
    try:
        return {t: con.sql(f"select count(*) from {t}").fetchall()[0][0] for t in c.SOURCE_TABLES}
    finally:
        con.close()


def state(paths) -> tuple:
    """Everything a failed ingest must leave alone: the lake pointer, the snapshots, the warehouse build."""
    return (lake.current_hash(paths), sorted(p.name for p in paths.lake.iterdir()), warehouse.build_id(paths),
            paths.warehouse.stat().st_ino)


def test_ingest_noop_replace_and_failure(ingest, home, synthetic_small, tmp_path):
    first = ingest(source=str(synthetic_small), home=str(home.home))
    assert first["noop"] is False
    assert first["row_counts"] == {c.RATINGS: 6000, c.MOVIES: 200, c.USERS: 120, c.GENRES: 19}
    assert counts(home) == first["row_counts"]
    assert lake.current_hash(home) == first["data_hash"] == warehouse.build_info(home)[c.DATA_HASH]

    again = ingest(source=str(synthetic_small), home=str(home.home))
    assert again["noop"] is True and again["data_hash"] == first["data_hash"]
    assert again["build_id"] == first["build_id"]                  # warehouse untouched

    changed = tmp_path / "changed"
    shutil.copytree(synthetic_small, changed)
    lines = (changed / "u.data").read_text().splitlines(keepends=True)
    (changed / "u.data").write_text("".join(lines[:-100]))
    third = ingest(source=str(changed), home=str(home.home))
    assert third["noop"] is False and third["data_hash"] != first["data_hash"]
    assert counts(home)[c.RATINGS] == 5900 and lake.current_hash(home) == third["data_hash"]
    assert warehouse.build_info(home)[c.DATA_HASH] == third["data_hash"]

    before = state(home)
    broken = tmp_path / "broken"
    shutil.copytree(changed, broken)
    with open(broken / "u.data", "a") as f:
        f.write("1\t1\t9\t881250949\n")
    with pytest.raises(InputError) as e:
        ingest(source=str(broken), home=str(home.home))
    assert (e.value.file, e.value.line, e.value.rule) == ("u.data", 5901, "rating-range")
    assert state(home) == before
    assert counts(home)[c.RATINGS] == 5900


def test_ingest_real_ml100k(ingest, home, real_ml100k):
    out = ingest(source=str(real_ml100k), home=str(home.home))
    assert out["row_counts"] == {c.RATINGS: 100_000, c.MOVIES: 1682, c.USERS: 943, c.GENRES: 19}
    con = warehouse.connect_readonly(home)
    try:
        titles = dict(con.sql(f"select {c.ITEM_ID}, {c.TITLE} from {c.MOVIES} "
                              f"where {c.ITEM_ID} in (1, 543, 1104)").fetchall())
        assert titles == {1: "Toy Story (1995)", 543: "Misérables, Les (1995)",
                          1104: "C'est arrivé près de chez vous (1992)"}
        assert con.sql(f"select count(*) from {c.MOVIES} where {c.RELEASE_DATE} is null").fetchall() == [(1,)]
        assert con.sql(f"select min({c.RATING}), max({c.RATING}) from {c.RATINGS}").fetchall() == [(1, 5)]
        genres = con.sql(f"select {c.GENRES_LIST} from {c.MOVIES} where {c.ITEM_ID} = 1").fetchall()[0][0]
        assert genres == ["Animation", "Children's", "Comedy"]
    finally:
        con.close()


def test_acquire_retries_only_transient_failures():
    from prefect.states import Failed

    from flows.steps import _transient
    from tasks.sources.acquire import ChecksumMismatch, DownloadFailed
    from tasks.core.errors import SourceUnavailable

    # the download already retried with back-off: the step fails at once, with its hint
    assert not _transient(None, None, Failed(data=DownloadFailed("no network")))
    assert _transient(None, None, Failed(data=ConnectionResetError("reset by peer")))
    assert not _transient(None, None, Failed(data=FileNotFoundError(2, "No such file", "/x/u.data")))
    assert _transient(None, None, Failed(data=ChecksumMismatch("ml-100k.zip", None, "sha1", "bad")))
    assert not _transient(None, None, Failed(data=InputError("bad.zip", None, "zip-symlink", "refused")))
    assert not _transient(None, None, Failed(data=InputError("x.zip", None, "zip-member-name", "too long")))
    assert not _transient(None, None, Failed(data=SourceUnavailable("source /nope does not exist")))
    assert not _transient(None, None, Failed(data=OSError(36, "File name too long")))
