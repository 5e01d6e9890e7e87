"""Consumer query files: no templating, variables with defaults, the same answers from Python and the CLI
form; the warehouse file in DuckDB 1.x storage; `lensflow query` refuses ids the tables do not have."""

from __future__ import annotations

import os
import re

import duckdb
import pytest

from tasks.core import contract as c
from tasks.core import sql
from tasks.stores import warehouse
from tests.reliability import helpers

QUERY_FILES = sorted(p.stem for p in sql.SQL_DIR.glob("query_*.sql"))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A data home with the synthetic source ingested and one publication live."""
    root = tmp_path_factory.mktemp("queries")
    return helpers.build_published_home(root / "home", helpers.make_source(root / "source", seed=5))


@pytest.mark.parametrize("name", QUERY_FILES)
def test_query_files_have_no_placeholders_or_bound_parameters(name):
    """What a consumer runs verbatim: no {{name}} placeholders, no $param (variables come from getvariable)."""
    text = re.sub(r"--[^\n]*", "", (sql.SQL_DIR / f"{name}.sql").read_text())
    assert "{{" not in text and not re.search(r"\$\w", text), name


@pytest.mark.parametrize("name", [n for n in QUERY_FILES if n != "query_publication_diff"])
def test_every_variable_a_query_file_reads_has_a_default(name):
    """An unset variable falls back to a value: each getvariable() sits inside a coalesce(..., default)."""
    text = re.sub(r"--[^\n]*", "", (sql.SQL_DIR / f"{name}.sql").read_text())
    assert len(re.findall(r"getvariable\(", text)) == len(re.findall(r"coalesce\(\s*getvariable\('\w+'\)\s*,", text))


def test_the_warehouse_is_written_in_duckdb_1x_storage(published):
    """DuckDB 1.x clients (the pinned CLI among them) read v1.x storage; DuckDB 2.0 writes v2.0 unless told."""
    con = duckdb.connect(str(published.warehouse), read_only=True)
    try:
        (tags,) = con.execute("select tags from duckdb_databases() where not internal").fetchone()
    finally:
        con.close()
    assert tags["storage_version"] == f"{warehouse.STORAGE_COMPATIBILITY}+"
    assert warehouse.STORAGE_COMPATIBILITY.startswith("v1.")


def test_bound_values_answer_like_set_variable_and_unset_means_the_default(published):
    con = warehouse.connect_readonly(published)
    try:
        users = [row[0] for row in sql.rows(con, "query_published_users")]
        user = users[3]
        bound = sql.rows(con, "query_top10_for_user", {c.USER_ID: user})
        default = sql.rows(con, "query_top10_for_user")
        assert default == sql.rows(con, "query_top10_for_user", {c.USER_ID: 1})  # documented default
        con.execute("set variable user_id = $user", {"user": user})  # what a CLI consumer does
        assert sql.rows(con, "query_top10_for_user") == bound and len(bound) == 10
        assert bound != default
        with pytest.raises(KeyError, match="reads no variable 'item_id'"):
            sql.rows(con, "query_top10_for_user", {c.ITEM_ID: 1})
    finally:
        con.close()


def run_query(argv: list[str], published, monkeypatch, capsys) -> tuple[int, str, str]:
    """`lensflow query ...` in this process: exit code, stdout, stderr."""
    from flows.cli import main

    for var in ("LENSFLOW_HOME", "PREFECT_HOME"):  # main() may point these at the home: restored after
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    code = main(["query", *argv, "--home", str(published.home)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv, message", [
    (["top10", "--user", "99999"], "lensflow: user 99999 is not in the users table (60 users, ids 1..60)"),
    (["because", "--user", "0"], "lensflow: user 0 is not in the users table (60 users, ids 1..60)"),
    (["similar", "--item", "81"], "lensflow: item 81 is not in the movies table (80 movies, ids 1..80)"),
])
def test_an_unknown_id_is_one_line_on_stderr_and_exit_4(argv, message, published, monkeypatch, capsys):
    code, out, err = run_query(argv, published, monkeypatch, capsys)
    # exit 4: something the user named does not exist (flows/cli.py EXIT_CODES); the hint names the home
    assert (code, out, err) == (4, "", f"{message} (data home {published.home})\n")


def test_a_known_id_prints_its_rows(published, monkeypatch, capsys):
    code, out, err = run_query(["top10", "--user", "1"], published, monkeypatch, capsys)
    assert code == 0 and err == ""
    assert out.splitlines()[0].split()[:3] == ["rank", "item_id", "title"] and len(out.splitlines()) == 11
