"""Input rules beyond the bad-file corpus: one integer rule, bounded times, encodings, unambiguous archives,
bounded work on hostile files, temporary files under the data home, and no rated item served after an ingest.

Each refusal asserts the InputError's file, line/field and rule, that the message spells them out, and that
the lake, publications and warehouse are unchanged (helpers.state). Data is generated (tasks.sources.synthetic).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from tasks.sources import acquire
from tasks.core import durable
from tasks.stores import lake
from tasks.sources import movielens
from tasks.sources import input_rules
from tasks.core import sql
from tasks.stores import warehouse
from tasks.core import contract as c
from tasks.core.errors import InputError
from tests.reliability import helpers
from tests.reliability.test_bad_inputs import DATA, GENRE, ITEM, USER, _lines, _write, edit_field, expect_refused

OCCUPATION = "u.occupation"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A good synthetic source, ingested and published into a home; the state to compare against."""
    root = tmp_path_factory.mktemp("input-rules")
    source = helpers.make_source(root / "good", seed=21)
    paths = helpers.build_published_home(root / "home", source)
    return source, paths, helpers.state(paths)


def broken_copy(source: Path, tmp_path: Path, *edits) -> Path:
    bad = tmp_path / "bad"
    shutil.copytree(source, bad)
    for edit in edits:
        edit(bad)
    return bad


# --- 1. one integer rule for every integer field of every file --------------------------------------

# (file, line, 0-based column, field) of every integer field the files have
INTEGER_FIELDS = [
    (DATA, 4, 0, c.USER_ID), (DATA, 5, 1, c.ITEM_ID), (DATA, 6, 2, c.RATING), (DATA, 7, 3, c.RATED_AT),
    (ITEM, 3, 0, c.ITEM_ID), (USER, 4, 0, c.USER_ID), (USER, 5, 1, c.AGE), (GENRE, 3, 1, c.GENRE_ID),
]
# forms some parser somewhere reads as a number; none is ASCII decimal digits only
NOT_DECIMAL = {"hex": b"0x10", "plus": b"+5", "minus": b"-3", "space-before": b" 5", "space-after": b"5 ",
               "underscore": b"1_0", "float": b"1.0", "exponent": b"1e3", "empty": b"",
               "arabic-indic": "\u0663".encode(), "fullwidth": "\uff15".encode()}


@pytest.mark.parametrize("form", list(NOT_DECIMAL), ids=list(NOT_DECIMAL))
@pytest.mark.parametrize("file,line,col,field", INTEGER_FIELDS, ids=[f"{f[0]}-{f[3]}" for f in INTEGER_FIELDS])
def test_every_integer_field_obeys_the_decimal_rule(file, line, col, field, form, good, tmp_path):
    source, paths, before = good
    # text files get the form in UTF-8 throughout (a latin-1 file with one UTF-8 form is mixed encodings)
    resave = [] if file == DATA else [_resave(file, "utf-8")]
    bad = broken_copy(source, tmp_path, *resave, edit_field(file, line, col, NOT_DECIMAL[form]))
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, bad), file, "integer", line, field)
    assert "decimal digits 0-9 only" in str(err)


# (file, line, column, field, value, rule): values of the right form but outside the field's range
OUT_OF_RANGE = [
    (DATA, 3, 0, c.USER_ID, b"0", "positive-id"), (DATA, 3, 1, c.ITEM_ID, b"2147483648", "id-range"),
    (ITEM, 2, 0, c.ITEM_ID, b"0", "positive-id"), (ITEM, 2, 0, c.ITEM_ID, b"2147483648", "id-range"),
    (USER, 2, 0, c.USER_ID, b"99999999999999999999", "id-range"), (USER, 2, 1, c.AGE, b"121", "age-range"),
    (DATA, 3, 2, c.RATING, b"05", None),  # leading zeros are decimal: 05 is 5 (accepted)
]


@pytest.mark.parametrize("file,line,col,field,value,rule", OUT_OF_RANGE,
                         ids=[f"{o[0]}-{o[3]}-{o[4].decode()[:12]}" for o in OUT_OF_RANGE])
def test_integer_ranges_are_the_same_in_every_file(file, line, col, field, value, rule, good, tmp_path):
    source, paths, before = good
    bad = broken_copy(source, tmp_path, edit_field(file, line, col, value))
    if rule is None:
        assert movielens.read_sources(bad).ratings[c.RATING].iloc[line - 1] == int(value)
        return
    expect_refused(paths, before, lambda: helpers.ingest(paths, bad), file, rule, line, field)


# --- 2. bounded timestamps -----------------------------------------------------------------------

@pytest.mark.parametrize("value", [b"4102444800", b"9223372036854775", b"99999999999999999999"],
                         ids=["2100-01-01", "overflows-microseconds", "beyond-64-bits"])
def test_timestamp_outside_1970_to_2099_is_refused(value, good, tmp_path):
    source, paths, before = good
    bad = broken_copy(source, tmp_path, edit_field(DATA, 9, 3, value))
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, bad), DATA, "timestamp", 9, c.RATED_AT)
    assert "1970-01-01 to 2099-12-31" in str(err)


def test_timestamps_at_both_ends_of_the_range_are_stored_exactly(good, tmp_path):
    source, _, _ = good
    bad = broken_copy(source, tmp_path, edit_field(DATA, 1, 3, b"0"), edit_field(DATA, 2, 3, b"4102444799"))
    rated = movielens.read_sources(bad).ratings[c.RATED_AT]
    assert str(rated.iloc[0]) == "1970-01-01 00:00:00" and str(rated.iloc[1]) == "2099-12-31 23:59:59"


# --- 3. encodings: read right or refused, never mojibake ----------------------------------------------

def _resave(name: str, encoding: str, bom: bool = False):
    def breaks(folder: Path) -> None:
        text = (folder / name).read_bytes().decode("latin-1")
        (folder / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return breaks


def _titles(paths) -> dict:
    con = warehouse.connect_readonly(paths)
    try:
        return dict(con.sql(f"select {c.ITEM_ID}, {c.TITLE} from {c.MOVIES}").fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("bom", [False, True], ids=["utf8", "utf8-bom"])
def test_u_item_resaved_as_utf8_reads_the_same_titles(bom, good, tmp_path):
    """The generator writes latin-1 with accented titles; the same file re-saved as UTF-8 gives the same text."""
    source, paths, _ = good
    latin = _titles(paths)
    accented = {k: v for k, v in latin.items() if not v.isascii()}
    assert accented, "the synthetic u.item has no accented title to test with"
    assert lake.current(paths).encodings[ITEM] == "latin-1"
    utf8 = broken_copy(source, tmp_path, _resave(ITEM, "utf-8", bom))
    assert (utf8 / ITEM).read_bytes() != (source / ITEM).read_bytes()
    home = helpers.copy_home(paths, tmp_path / "home")
    helpers.ingest(home, utf8)
    assert _titles(home) == latin                      # not 'CafÃ©'
    assert not any("Ã" in t or "\ufffd" in t for t in _titles(home).values())
    assert lake.current(home).encodings == {DATA: "ascii", GENRE: "ascii", ITEM: "utf-8", OCCUPATION: "ascii",
                                            USER: "ascii"}


def _accented(folder: Path) -> list[int]:
    return [i for i, ln in enumerate(_lines(folder, ITEM)) if not ln.isascii()]


def _mixed(folder: Path) -> None:
    """u.item in latin-1 except its first accented line pasted in as UTF-8 (what a careless edit leaves)."""
    lines = _lines(folder, ITEM)
    k = _accented(folder)[0]
    lines[k] = lines[k].decode("latin-1").encode("utf-8")
    _write(folder, ITEM, lines)


def test_mixed_encodings_are_refused(good, tmp_path):
    source, paths, before = good
    accented = _accented(source)
    assert len(accented) >= 2, "the synthetic u.item needs two accented titles"
    bad = broken_copy(source, tmp_path, _mixed)
    # the first latin-1 byte breaks UTF-8 on the second accented line; the first holds UTF-8
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, bad), ITEM, "encoding", accented[1] + 1)
    assert f"line {accented[0] + 1} holds the UTF-8 sequence" in str(err)


def test_latin1_u_user_with_an_accent_reads_right(good, tmp_path):
    source, _, _ = good
    bad = broken_copy(source, tmp_path, edit_field(USER, 2, 4, "Zürich".encode("latin-1")))
    tables = movielens.read_sources(bad)
    assert tables.users[c.ZIP_CODE].iloc[1] == "Zürich" and tables.encodings[USER] == "latin-1"
    (bad / USER).write_bytes((bad / USER).read_bytes().decode("latin-1").encode("utf-8"))
    tables = movielens.read_sources(bad)
    assert tables.users[c.ZIP_CODE].iloc[1] == "Zürich" and tables.encodings[USER] == "utf-8"


# --- 4. unambiguous archives ------------------------------------------------------------------------

def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # zipfile warns on a duplicate name; that is the point
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def _members(source: Path, prefix: str) -> list[tuple[str, bytes]]:
    return [(f"{prefix}{p.name}", p.read_bytes()) for p in sorted(source.iterdir())]


def _extracted(paths) -> list[str]:
    root = paths.raw / "extracted"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_zip_with_a_member_twice_is_refused(good, tmp_path):
    source, paths, before = good
    other = helpers.make_source(tmp_path / "other", seed=22)
    archive = _zip(tmp_path / "twice.zip", _members(source, "ml-100k/") + [("ml-100k/u.data",
                                                                            (other / DATA).read_bytes())])
    was = _extracted(paths)
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, archive), archive.name,
                         "zip-duplicate-member", field="ml-100k/u.data")
    assert "twice" in str(err) and _extracted(paths) == was


@pytest.mark.parametrize("second", ["copy/ml-100k/", "ml-100k-old/", ""], ids=["nested", "sibling", "top-level"])
def test_zip_with_two_movielens_folders_is_refused(second, good, tmp_path):
    source, paths, before = good
    other = helpers.make_source(tmp_path / "other", seed=22)
    archive = _zip(tmp_path / "two.zip", _members(source, "ml-100k/") + _members(other, second))
    was = _extracted(paths)
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, archive), archive.name, "ambiguous-source")
    assert "ml-100k" in str(err) and (second.rstrip("/") or "(top level)") in str(err)
    assert _extracted(paths) == was                   # refused from the member list, nothing extracted


def test_folder_with_two_movielens_folders_is_refused(good, tmp_path):
    source, paths, before = good
    root = tmp_path / "downloads"
    shutil.copytree(source, root / "ml-100k")
    shutil.copytree(source, root / "ml-100k-copy")
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, root), str(root), "ambiguous-source")
    assert "ml-100k/" in str(err) and "ml-100k-copy/" in str(err)
    shutil.copytree(source, root, dirs_exist_ok=True)  # pointing at a folder that holds u.data is not ambiguous
    assert acquire.resolve_source(str(root), paths, progress=False) == root


def test_zip_member_name_the_file_system_cannot_hold_is_refused(good, tmp_path):
    source, paths, before = good
    long_name = "ml-100k/" + "n" * 300 + ".txt"
    archive = _zip(tmp_path / "long.zip", _members(source, "ml-100k/") + [(long_name, b"x")])
    expect_refused(paths, before, lambda: helpers.ingest(paths, archive), archive.name, "zip-member-name",
                   field=long_name)
    # a file and a folder of the same name: the OSError from creating it is bad input too, not a retry
    clash = _zip(tmp_path / "clash.zip", _members(source, "ml-100k/") + [("ml-100k/extra", b"x"),
                                                                        ("ml-100k/extra/inner", b"y")])
    with pytest.raises(InputError) as info:
        acquire.safe_extract(clash, tmp_path / "out")
    assert info.value.rule == "zip-member-name" and info.value.field == "ml-100k/extra/inner"
    assert not (tmp_path / "out").exists() and list(tmp_path.glob(".out.tmp-*")) == []


def test_ingest_flow_does_not_retry_bad_archives(good, tmp_path, prefect_api):
    """The acquire task retries network trouble only: an over-long member name runs once and is refused."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.ingest import ingest as ingest_flow

    source, paths, before = good
    long_name = "ml-100k/" + "n" * 300
    archive = _zip(tmp_path / "long.zip", _members(source, "ml-100k/") + [(long_name, b"x")])
    state = ingest_flow(source=str(archive), home=str(paths.home), return_state=True)
    err = state.result(raise_on_failure=False)
    assert isinstance(err, InputError) and err.rule == "zip-member-name", err
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    acquire_runs = [r for r in runs if r.name.startswith("acquire")]
    assert [r.run_count for r in acquire_runs] == [1], [(r.name, r.run_count) for r in runs]
    assert helpers.state(paths) == before


# --- 8. bounded work on hostile files --------------------------------------------------------------

def _sparse(path: Path, size: int, head: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)                         # a hole: reads as NUL bytes, costs no disk


CHILD = r"""
import json, sys, time
from tasks.sources import movielens
from tasks.core.errors import InputError
t = time.perf_counter()
try:
    movielens.content_hash(sys.argv[1])
    movielens.read_sources(sys.argv[1])
    out = {"error": None}
except InputError as e:
    out = {"error": [e.file, e.line, e.rule, str(e)]}
out["seconds"] = round(time.perf_counter() - t, 3)
with open("/proc/self/status") as f:  # VmHWM: this program's peak (ru_maxrss would include the parent's)
    out["peak_rss_mb"] = round(int(next(ln for ln in f if ln.startswith("VmHWM")).split()[1]) / 1024)
print(json.dumps(out))
"""


def _run_child(folder: Path) -> dict:
    """Hash and read a folder in a fresh process (its own peak memory); the error and the cost."""
    res = subprocess.run([sys.executable, "-c", CHILD, str(folder)], cwd=helpers.REPO, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(helpers.REPO)}, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


HOSTILE = {
    # name: (file, size, head, rule, line)
    "2GiB-of-NULs": (DATA, 2 << 30, b"", "text", 1),
    "over-the-ceiling": (DATA, (2 << 30) + 1, b"1\t1\t5\t881250949\n", "file-size", None),
    "NULs-after-one-line": (DATA, 1 << 30, b"1\t1\t5\t881250949\n", "text", 2),
    "u.item-over-its-ceiling": (ITEM, (64 << 20) + 1, b"", "file-size", None),
    "NULs-after-8KiB-of-lines": (DATA, 256 << 20, None, "line-length", None),
}


@pytest.mark.parametrize("name", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_large_file_is_refused_with_bounded_work(name, good, tmp_path):
    source, paths, before = good
    file, size, head, rule, line = HOSTILE[name]
    bad = broken_copy(source, tmp_path)
    if head is None:                              # good lines past the first-block check, then a hole
        lines = (source / DATA).read_bytes().split(b"\n")[:600]
        head = b"\n".join(lines) + b"\n"
        line = len(lines) + 1
        assert len(head) > input_rules.MAX_LINE_BYTES
    _sparse(bad / file, size, head)
    got = _run_child(bad)
    assert got["error"] is not None and got["error"][:3] == [file, line, rule], got
    assert got["peak_rss_mb"] < 1024, got         # the whole file is never held in memory
    helpers.save_results(f"hostile_{name}", {"size_bytes": size, **got})
    expect_refused(paths, before, lambda: helpers.ingest(paths, bad), file, rule, line)


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_something_else_where_a_file_belongs_is_refused(kind, good, tmp_path):
    source, paths, before = good
    bad = broken_copy(source, tmp_path)
    (bad / USER).unlink()
    os.mkdir(bad / USER) if kind == "directory" else os.mkfifo(bad / USER)
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, bad), USER, "regular-file")
    assert ("directory" if kind == "directory" else "FIFO") in str(err)


def test_unreadable_file_is_refused(good, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file: permissions cannot make one unreadable")
    source, paths, before = good
    bad = broken_copy(source, tmp_path)
    (bad / ITEM).chmod(0)
    expect_refused(paths, before, lambda: helpers.ingest(paths, bad), ITEM, "readable")


def test_over_long_line_is_refused(good, tmp_path):
    source, paths, before = good
    bad = broken_copy(source, tmp_path, edit_field(ITEM, 5, 1, b"T" * (input_rules.MAX_LINE_BYTES + 1)))
    expect_refused(paths, before, lambda: helpers.ingest(paths, bad), ITEM, "line-length", 5)


# --- 6. temporary files live under the data home and are swept there -----------------------------------

def test_scratch_folders_live_under_the_home_and_a_killed_ones_are_swept(tmp_path):
    paths = helpers.Paths(tmp_path / "home")
    with durable.scratch_dir(paths, "lensflow-model-") as tmp:
        assert Path(tmp).parent == paths.tmp
    assert list(paths.tmp.iterdir()) == []        # removed on a normal exit
    # a process killed while holding one leaves it behind ...
    code = ("import os, signal, sys; from pathlib import Path; from tasks.core import durable; "
            "from tasks.core.settings import Paths\n"
            "with durable.scratch_dir(Paths(Path(sys.argv[1])), 'lensflow-model-') as t:\n"
            "    (Path(t) / 'weights.pt').write_bytes(b'x' * 1000); os.kill(os.getpid(), signal.SIGKILL)")
    system_tmp_before = {p.name for p in Path(tempfile.gettempdir()).glob("lensflow-model-*")}
    res = subprocess.run([sys.executable, "-c", code, str(paths.home)], cwd=helpers.REPO,
                         env={**os.environ, "PYTHONPATH": str(helpers.REPO)})
    assert res.returncode == -signal.SIGKILL
    (left,) = paths.tmp.iterdir()
    assert left.name.startswith("lensflow-model-")
    assert {p.name for p in Path(tempfile.gettempdir()).glob("lensflow-model-*")} == system_tmp_before
    # ... which the sweep leaves while young (a live writer may own it) and removes once old
    assert durable.sweep(paths) == [] and left.exists()
    old = time.time() - 7200
    os.utime(left, (old, old))
    assert durable.sweep(paths) == [f"tmp/{left.name}"] and not left.exists()


def test_no_scratch_folder_outside_the_home():
    """Every temporary folder the code makes goes through durable.scratch_dir or sits beside its target."""
    offenders = []
    for folder in ("tasks", "flows", "models"):
        for path in sorted((helpers.REPO / folder).rglob("*.py")):
            text = path.read_text()
            for call in ("TemporaryDirectory(", "mkdtemp(", "NamedTemporaryFile(", "mkstemp("):
                for chunk in text.split(call)[1:]:
                    args = chunk.split(")", 1)[0]
                    if "dir=" not in args and not (path.name == "durable.py" and "paths.tmp" in args):
                        offenders.append(f"{path.relative_to(helpers.REPO)}: {call}{args})")
    assert offenders == []


# --- 7. no rated item served after an ingest of new ratings --------------------------------------------

def _recs(paths, user: int) -> list[tuple]:
    con = warehouse.connect_readonly(paths)
    try:
        return con.execute(f"select {c.RANK}, {c.ITEM_ID} from {c.USER_RECOMMENDATIONS} "
                           f"where {c.USER_ID} = $u order by {c.RANK}", {"u": user}).fetchall()
    finally:
        con.close()


def test_items_rated_after_the_publish_are_not_served(good, tmp_path):
    source, published, _ = good
    paths = helpers.copy_home(published, tmp_path / "home")
    pub_before = helpers.served(paths)
    user = 7
    before = _recs(paths, user)
    newly_rated = [item for _, item in before[:3]] + [before[5][1]]
    assert len(before) >= 10
    # the same data plus ratings by that user of four items in the published list
    more = tmp_path / "more"
    shutil.copytree(source, more)
    with open(more / DATA, "ab") as f:
        f.write(b"".join(f"{user}\t{item}\t4\t893286000\n".encode() for item in newly_rated))
    helpers.ingest(paths, more)
    after = _recs(paths, user)
    assert not {item for _, item in after} & set(newly_rated)
    assert [item for _, item in after] == [item for _, item in before if item not in newly_rated]
    assert [rank for rank, _ in after] == list(range(1, len(after) + 1))       # renumbered, no gaps
    con = warehouse.connect_readonly(paths)
    try:
        from tasks.stores import checks

        assert checks.not_in(c.RECOMMENDATIONS, c.RATINGS, c.USER_ID, c.ITEM_ID).offending_rows(con) == []
        live = sql.rows(con, "query_live_publication")
        cur = sql.run(con, "query_publications")
        listed = [dict(zip([d[0] for d in cur.description], row)) for row in cur.fetchall()]
        others = con.execute(f"select count(*) from {c.RECOMMENDATIONS} where {c.USER_ID} <> $u",
                             {"u": user}).fetchall()[0][0]
    finally:
        con.close()
    # consumers see that the publication was scored on older data
    assert {row[4] for row in live} == {True}
    assert [p[c.STALE] for p in listed if p[c.PUBLICATION_ID] == live[0][1]] == [True]
    assert {row[1] for row in live} == {row[1] for row in pub_before["live"]}      # same publication
    n_before = {row[0]: row[2] for row in pub_before["live"]}
    assert others == n_before[c.RECOMMENDATIONS] - len(before)                    # other users untouched
    helpers.check_consistent(paths)
    # a new publish on the new data is not stale and recommends none of them either
    helpers.publish(paths)
    assert not {item for _, item in _recs(paths, user)} & set(newly_rated)
    assert {row[4] for row in helpers.served(paths)["live"]} == {False}
