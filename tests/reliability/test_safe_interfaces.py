"""Safe interfaces: no SQL built by string formatting, hostile CLI values refused, ad-hoc SQL read-only and
without file access, servers on 127.0.0.1, no credentials in the tree."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.reliability import helpers

REPO = helpers.REPO
CODE_DIRS = ("tasks", "flows", "models")
# Calls whose first argument is SQL text (DuckDB connection/relation methods, sqlite3, pandas).
SQL_METHODS = {"execute", "executemany", "sql", "query", "read_sql", "read_sql_query", "from_query"}
# Calls taking an MLflow filter string (it has no bound parameters: values must pass through a quoting guard).
FILTER_METHODS = {"search_runs", "search_model_versions", "search_registered_models", "search_experiments",
                  "search_logged_models"}
SAFE_FILTER_CALLS = {"_quote"}


def _is_formatted(node: ast.AST) -> bool:
    """An f-string with values, `"..." % x`, `"..." + x` or `"...".format(...)`."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return any(isinstance(side, (ast.Constant, ast.JoinedStr)) and
                   isinstance(getattr(side, "value", ""), str) or _is_formatted(side)
                   for side in (node.left, node.right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return True
    return False


def _formatted_names(func: ast.AST) -> dict[str, int]:
    """Local names assigned a formatted string anywhere in a function: {name: line}."""
    found = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and _is_formatted(node.value):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.lineno
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and \
                isinstance(node.op, ast.Add) and _is_formatted(ast.BinOp(ast.Constant(""), ast.Add(), node.value)):
            found[node.target.id] = node.lineno
    return found


def _unsafe_filter(node: ast.AST) -> bool:
    """A filter string interpolating anything but a quoting-guard call or a constant name."""
    if not isinstance(node, ast.JoinedStr):
        return _is_formatted(node)
    for v in node.values:
        if isinstance(v, ast.FormattedValue):
            inner = v.value
            guarded = isinstance(inner, ast.Call) and getattr(inner.func, "id", getattr(inner.func, "attr", "")) \
                in SAFE_FILTER_CALLS
            constant = isinstance(inner, ast.Name) and inner.id.isupper()
            if not (guarded or constant):
                return True
    return False


def scan_source(text: str, filename: str = "<string>") -> list[str]:
    """Every SQL execute/sql call fed a formatted string (directly or through a local name)."""
    tree = ast.parse(text, filename)
    problems = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    scopes.append(tree)
    for scope in scopes:
        tainted = _formatted_names(scope) if not isinstance(scope, ast.Module) else {}
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            method = node.func.attr
            args = list(node.args) + [k.value for k in node.keywords if k.arg in ("query", "sql", "statement")]
            if method in SQL_METHODS and args:
                first = args[0]
                if _is_formatted(first):
                    problems.append(f"{filename}:{node.lineno}: .{method}() gets SQL built by string formatting")
                elif isinstance(first, ast.Name) and first.id in tainted:
                    problems.append(f"{filename}:{node.lineno}: .{method}({first.id}) and {first.id} is a formatted "
                                    f"string (line {tainted[first.id]})")
            if method in ("run", "rows", "load") and isinstance(node.func.value, ast.Name) and \
                    node.func.value.id == "sql":
                name_arg = node.args[1] if method != "load" and len(node.args) > 1 else \
                    (node.args[0] if node.args else None)
                if name_arg is not None and _is_formatted(name_arg):
                    problems.append(f"{filename}:{node.lineno}: sql.{method}() gets a formatted file name")
            if method in FILTER_METHODS:
                filters = [k.value for k in node.keywords if k.arg == "filter_string"]
                if method == "search_model_versions" and node.args:
                    filters.append(node.args[0])
                if any(_unsafe_filter(f) for f in filters):
                    problems.append(f"{filename}:{node.lineno}: .{method}() filter interpolates an unguarded value")
    return sorted(set(problems))


def code_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (REPO / d).rglob("*.py") if ".venv" not in p.parts)


def test_scanner_catches_every_formatting_style():
    """The scan below can fail: each bad pattern is reported, the bound-parameter forms are not."""
    bad = '''
def f(con, user, table):
    con.execute(f"select * from ratings where user_id = {user}")
    con.sql("select * from %s" % table)
    con.execute("select * from " + table)
    con.execute("select * from {}".format(table))
    q = f"delete from {table}"
    con.execute(q)
    cl.search_runs([e], filter_string=f"tags.x = '{user}'")
    cl.search_model_versions(f"name = '{table}'")
'''
    good = '''
def f(con, user):
    con.execute("select * from ratings where user_id = $user_id", {"user_id": user})
    sql.run(con, "query_top10_for_user", {"user_id": user})
    cl.search_model_versions(f"name = '{_quote(name)}'")
    q = "select 1"
    con.execute(q)
'''
    assert len(scan_source(bad)) == 7, scan_source(bad)
    assert scan_source(good) == []


def test_no_sql_is_built_by_string_formatting_in_project_code():
    files = code_files()
    assert len(files) > 20  # the scan really covers the tree
    problems = [p for f in files for p in scan_source(f.read_text(), str(f.relative_to(REPO)))]
    assert problems == [], "\n".join(problems)


# --- hostile values at the CLI ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("safe")
    return helpers.build_published_home(root / "home", helpers.make_source(root / "src", seed=41))


@pytest.mark.parametrize("argv", [
    ["query", "top10", "--user", "1; drop table ratings"],
    ["query", "similar", "--item", "1 or 1=1"],
    ["query", "top10", "--user", "1", "--limit", "10; drop table ratings"],
    ["query", "drop table ratings"],
])
def test_hostile_query_values_are_refused_by_the_argument_types(argv, capsys):
    from flows.cli import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid int value" in err or "invalid choice" in err, err


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "flows.cli", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_query_sql_refuses_writes_and_file_access_and_changes_nothing(published, tmp_path):
    paths = published
    before = helpers.state(paths)
    leak = tmp_path / "leak.csv"
    attached = tmp_path / "new.duckdb"
    attempts = {
        "drop table ratings": "read-only",
        "insert into ratings select * from ratings": "read-only",
        "update recommendations set score = 0": "read-only",
        f"copy ratings to '{leak}'": "file system operations are disabled",
        f"attach '{attached}' as other": "file system operations are disabled",
        "select * from read_csv('/etc/passwd')": "file system operations are disabled",
        "set enable_external_access = true": "configuration has been locked",
        "select title::integer from movies": "Could not convert",   # fails at run time, not at bind time
    }
    refused = {}
    for statement, reason in attempts.items():
        done = run_cli("query", "--home", str(paths.home), "sql", "--sql", statement)
        refused[statement] = done.returncode
        assert done.returncode == 2 and "query refused" in done.stderr and reason in done.stderr, \
            (statement, done.returncode, done.stderr[-1500:])
    assert not leak.exists() and not attached.exists()
    assert helpers.state(paths) == before
    ok = run_cli("query", "--home", str(paths.home), "sql", "--sql",
                 "select count(*) as n from user_recommendations")
    assert ok.returncode == 0 and "n" in ok.stdout, ok.stderr[-1500:]
    hostile = run_cli("query", "--home", str(paths.home), "top10", "--user", "1; drop table ratings")
    assert hostile.returncode == 2 and "invalid int value" in hostile.stderr
    assert helpers.state(paths) == before


def test_query_top10_binds_the_user_id(published):
    """A user id goes in as a bound parameter: an id nobody has answers with no rows, not an error."""
    from tasks.core import sql
    from tasks.stores import warehouse
    from tasks.core import contract as c

    con = warehouse.connect_readonly(published)
    try:
        users = [row[0] for row in sql.rows(con, "query_published_users")]
        assert len(sql.rows(con, "query_top10_for_user", {c.USER_ID: users[0]})) == 10
        assert sql.rows(con, "query_top10_for_user", {c.USER_ID: 10**9}) == []
    finally:
        con.close()


# --- servers bind to localhost --------------------------------------------------------------------

WILDCARD = ".".join(["0"] * 4)  # the every-interface address (spelled so this file does not hold it)


def test_servers_the_project_starts_bind_to_localhost():
    from flows.cli import build_parser
    from tasks.registry import versions as registry
    from tasks.core.settings import Paths

    argv = registry.server_command(Paths(Path("/tmp/x")))
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert build_parser().parse_args(["mlflow-ui"]).host == "127.0.0.1"
    makefile = (REPO / "Makefile").read_text()
    starts = [ln for ln in makefile.splitlines() if "server start" in ln or "mlflow server" in ln]
    assert starts and all("--host 127.0.0.1" in ln for ln in starts), starts
    # the commands a person copies: lines inside the README's fenced code blocks
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (REPO / "deployments" / "README.md").read_text(), re.S)
    starts = [ln for b in blocks for ln in b.splitlines() if re.search(r"(prefect|mlflow) server\b", ln)]
    assert starts and all("--host 127.0.0.1" in ln for ln in starts), starts
    wildcard = [f"{p}:{n}" for p in tracked_files() if p.suffix in (".py", ".yaml", ".yml", ".toml", ".md", "")
                for n, ln in enumerate(read_text(p).splitlines(), 1) if WILDCARD in ln]
    assert wildcard == [], wildcard


# --- no credentials in the tree ---------------------------------------------------------------------

SECRET_PATTERNS = [
    re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)\b\s*[:=]\s*['\"]([^'\"\s]{8,})['\"]"),
    re.compile(r"AKIA[0-9A-Z]{16}"),                                     # AWS access key id
    re.compile(r"-----BEGIN (RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),                         # GitHub tokens
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),                        # Slack tokens
    re.compile(r"://([^/\s:@'\"]+):([^/\s@'\"]+)@"),                     # user:password@host in a URL
]
PLACEHOLDERS = re.compile(r"(?i)^(\$\{?\w+\}?|<[^>]+>|pass(word)?|user|secret|changeme|x+|\*+|\.\.\.)$")


def tracked_files() -> list[Path]:
    """Files git tracks plus new files it would track (not ignored)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return [REPO / p for p in out if p and (REPO / p).is_file()]


def read_text(path: Path) -> str:
    data = path.read_bytes()[:1_000_000]
    return "" if b"\0" in data[:8192] else data.decode("utf-8", "replace")


def find_secrets(text: str) -> list[str]:
    hits = []
    for pattern in SECRET_PATTERNS:
        for m in pattern.finditer(text):
            value = m.group(m.lastindex) if m.lastindex else m.group(0)
            if m.lastindex and PLACEHOLDERS.match(value):
                continue
            hits.append(m.group(0))
    return hits


def test_secret_scanner_finds_planted_credentials():
    # split literals, so this file itself does not hold what the tree scan looks for
    planted = ('pass' 'word = "hunter2hunter2"\nAWS = "AKIA' 'ABCDEFGHIJKLMNOP"\n'
               "url = 'postgresql://admin:" "S3cr3tPw@db/x'\n-----BEGIN RSA PRIVATE " "KEY-----\n"
               "token: 'ghp_" "abcdefghijklmnopqrstuvwxyz0123456789'\n")
    assert all(find_secrets(line) for line in planted.splitlines()), find_secrets(planted)
    assert find_secrets("postgresql+asyncpg://user:pass@host/prefect\nPASSWORD=${DB_PASSWORD}\n") == []


def test_no_credentials_in_tracked_files():
    files = tracked_files()
    assert len(files) > 50
    hits = [f"{p.relative_to(REPO)}: {h}" for p in files if p.suffix not in (".lock",)
            for h in find_secrets(read_text(p))]
    assert hits == [], hits
