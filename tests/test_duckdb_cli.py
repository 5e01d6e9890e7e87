"""The DuckDB CLI on a warehouse the project built: it opens the file, and every command the README or
the run's closing message shows, and every consumer query file (sql/query_*.sql), runs as written.

Which CLI: the `duckdb` beside the running python (the project's .venv/bin/duckdb, installed by
`make install` from requirements.lock), else the first `duckdb` on PATH. Run from the project's
.venv (CI does), a missing CLI or one other than the pinned version is a set-up bug: the tests fail.
Run from any other python (a shared venv, a system python), the tests skip when no CLI is found.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core import contract as c
from tasks.core import sql
from tests.reliability import helpers

REPO = Path(__file__).resolve().parents[1]
QUERY_FILES = sorted(p.stem for p in (REPO / "sql").glob("query_*.sql"))
EXAMPLE_VALUES = {c.USER_ID: 2, c.ITEM_ID: 3}  # a non-default value for each variable a query file reads


def pinned_cli_version() -> str:
    """The duckdb-cli version requirements.lock pins."""
    (version,) = re.findall(r"^duckdb-cli==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)
    return version


@pytest.fixture(scope="module")
def duckdb_cli() -> str:
    """Path of the DuckDB CLI to test with (see the module docstring for the rule)."""
    beside = Path(sys.executable).parent / "duckdb"
    in_project_venv = Path(sys.prefix).resolve() == (REPO / ".venv").resolve()
    if in_project_venv:
        if not (beside.is_file() and os.access(beside, os.X_OK)):
            pytest.fail(f"{beside} is missing: `make install` installs duckdb-cli=={pinned_cli_version()} "
                        "from requirements.lock (rerun `make install`)")
        version = subprocess.run([str(beside), "-version"], capture_output=True, text=True, timeout=60).stdout
        assert version.startswith(f"v{pinned_cli_version()} "), (version, pinned_cli_version())
        return str(beside)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("duckdb")
    if found is None:
        pytest.skip(f"no duckdb CLI beside {sys.executable} or on PATH; this python is not the project's "
                    ".venv, where `make install` puts one")
    return found


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A data home built by the project from synthetic data: ingested, published twice (for the diff)."""
    root = tmp_path_factory.mktemp("cli")
    source = helpers.make_source(root / "source", seed=11)
    paths = helpers.build_published_home(root / "home", source)
    helpers.publish(paths, version="2")
    return paths


def cli(duckdb_cli: str, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI from the repository root (so `.read sql/...` resolves) and return the finished process."""
    return subprocess.run([duckdb_cli, *argv], input=stdin, cwd=REPO, capture_output=True, text=True, timeout=120)


def json_rows(stdout: str) -> list[dict]:
    """All rows of the `-json` results printed one after another."""
    decoder, rows, i = json.JSONDecoder(), [], 0
    while i < len(stdout):
        if stdout[i].isspace():
            i += 1
            continue
        value, i = decoder.raw_decode(stdout, i)
        rows.extend(value)
    return rows


def python_rows(paths, name: str, params: dict | None = None) -> list[dict]:
    """The same file through the project's own read path (tasks.core.sql on connect_readonly)."""
    from tests.tasks.publishing.test_publish import query

    return query(paths, name, params)


def same_rows(cli_rows: list[dict], expected: list[dict]) -> bool:
    """Same row count, columns and int/text values (floats, lists, timestamps print differently per client)."""
    if len(cli_rows) != len(expected):
        return False
    for got, want in zip(cli_rows, expected):
        if list(got) != list(want):
            return False
        if any(str(got[k]) != str(v) for k, v in want.items() if type(v) in (int, str)):
            return False
    return True


def succeeded(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr[-2000:])


def test_the_cli_opens_the_warehouse(duckdb_cli, published):
    done = cli(duckdb_cli, ["-readonly", "-json", str(published.warehouse), "-c",
                            "select count(*) as n from user_recommendations"])
    succeeded(done)
    assert json_rows(done.stdout)[0]["n"] > 0


@pytest.mark.parametrize("name", QUERY_FILES)
def test_each_query_file_runs_verbatim_in_the_cli(duckdb_cli, published, name):
    """`.read sql/<file>` with no variables set (their defaults) and, for each variable, a value set first."""
    done = cli(duckdb_cli, ["-readonly", "-json", str(published.warehouse)], stdin=f".read sql/{name}.sql\n")
    succeeded(done)
    got = json_rows(done.stdout)
    assert got, f"sql/{name}.sql returned no rows in the CLI"
    assert same_rows(got, python_rows(published, name)), (got[:3], python_rows(published, name)[:3])
    settable = sorted(sql.variables(name) & set(EXAMPLE_VALUES))
    if settable:
        sets = "".join(f"set variable {v} = {EXAMPLE_VALUES[v]};\n" for v in settable)
        done = cli(duckdb_cli, ["-readonly", "-json", str(published.warehouse)],
                   stdin=f"{sets}.read sql/{name}.sql\n")
        succeeded(done)
        expected = python_rows(published, name, {v: EXAMPLE_VALUES[v] for v in settable})
        assert same_rows(json_rows(done.stdout), expected), (done.stdout[:500], expected[:3])


def test_publication_diff_takes_the_ids_from_a_variable(duckdb_cli, published):
    ids = [r[c.PUBLICATION_ID] for r in python_rows(published, "query_publications")]
    assert len(ids) == 2
    stdin = f"set variable publication_diff_ids = ['{ids[0]}', '{ids[1]}'];\n.read sql/query_publication_diff.sql\n"
    done = cli(duckdb_cli, ["-readonly", "-json", str(published.warehouse)], stdin=stdin)
    succeeded(done)
    (row,) = json_rows(done.stdout)
    assert (row["old_publication_id"], row["new_publication_id"]) == (ids[1], ids[0])  # newest first in the list
    assert row["n_users"] > 0


def test_every_view_and_title_table_reads_in_the_cli(duckdb_cli, published):
    """Opened directly (not ATTACHed as `warehouse`), each view and lookup table answers."""
    done = cli(duckdb_cli, ["-readonly", "-json", str(published.warehouse), "-c",
                            "select view_name from duckdb_views() where not internal"])
    succeeded(done)
    views = [r["view_name"] for r in json_rows(done.stdout)]
    for table in [c.USER_RECOMMENDATIONS, c.ITEM_NEIGHBORS, *views]:
        done = cli(duckdb_cli, ["-readonly", "-json", str(published.warehouse), "-c",
                                f"select count(*) as n from {table}"])
        succeeded(done)
        assert json_rows(done.stdout)[0]["n"] > 0, table


def closing_message(published, monkeypatch, capsys) -> str:
    """What `lensflow run` prints when it finishes, for this data home (the pipeline itself stubbed)."""
    import flows.pipeline
    from flows import commands
    from flows.cli import build_parser

    summary = {"models": [], "publication": {"publication_id": "p", "skipped": True}}
    monkeypatch.setattr(flows.pipeline, "pipeline", lambda **kw: summary)
    # --force: past the no-op check, straight to the (stubbed) pipeline
    source = published.home.parent / "source"   # the synthetic folder the home was built from
    commands.run(build_parser().parse_args(["run", "--force", "--source", str(source), "--home", str(published.home)]),
                 published)
    return capsys.readouterr().out


def shown_commands(text: str, warehouse: Path) -> list[tuple[list[str], str | None]]:
    """Each `duckdb ...` command line in text (README fences or plain output): (argv, stdin or None).

    A command without SQL opens an interactive session: the ```sql block right after it is its input.
    Paths to a `warehouse/lensflow.duckdb` become the test's warehouse; $LENSFLOW_HOME is expanded.
    """
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip().removeprefix("$ ")
        program = stripped.split(" ", 1)[0]
        if not (program == "duckdb" or program.endswith("/duckdb")) or " " not in stripped:
            continue
        argv = [str(warehouse) if a.endswith("warehouse/lensflow.duckdb") else a
                for a in shlex.split(os.path.expandvars(stripped))[1:]]
        positional = [a for a in argv if not a.startswith("-")]
        stdin = None
        if len(positional) < 2:  # interactive: feed it the next sql block
            rest = "\n".join(lines[i + 1:])
            block = re.search(r"```sql\n(.*?)```", rest, re.S)
            stdin = block.group(1) if block else ""
        found.append((argv, stdin))
    return found


def test_the_run_closing_message_duckdb_command_runs(duckdb_cli, published, monkeypatch, capsys):
    shown = shown_commands(closing_message(published, monkeypatch, capsys), published.warehouse)
    assert shown, "the closing message shows no duckdb command"
    for argv, stdin in shown:
        done = cli(duckdb_cli, argv, stdin)
        succeeded(done)
        assert done.stdout.strip(), argv


def test_every_duckdb_command_in_the_readme_runs(duckdb_cli, published, monkeypatch):
    monkeypatch.setenv("LENSFLOW_HOME", str(published.home))
    shown = shown_commands((REPO / "README.md").read_text(), published.warehouse)
    assert shown, "the README shows no duckdb command"
    for argv, stdin in shown:
        done = cli(duckdb_cli, argv, stdin)
        succeeded(done)
        assert done.stdout.strip(), argv
