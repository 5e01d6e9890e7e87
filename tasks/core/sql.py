"""Load and run the SQL files in `sql/`: every statement the project runs lives there.

Two kinds of file. Build and check files bind `$name` parameters and may use `{{ name }}` contract
placeholders. Consumer files (`query_*.sql`) run verbatim in the DuckDB CLI: they name tables literally
and read their inputs as session variables, `getvariable('user_id')`, with a default when unset.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from tasks.core import contract as c

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# Identifiers a template may receive: the contract's table and column names, nothing else.
_CONTRACT_NAMES = frozenset(v for k, v in vars(c).items() if k.isupper() and isinstance(v, str))
_VARIABLE = re.compile(r"getvariable\(\s*'(\w+)'\s*\)", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")


@lru_cache(maxsize=None)
def _text(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text()


def _identifier(value) -> str:
    """A contract name, or a tuple of them as a comma-separated list; anything else is refused."""
    names = (value,) if isinstance(value, str) else tuple(value)
    bad = [n for n in names if n not in _CONTRACT_NAMES]
    if bad or not names:
        raise KeyError(f"SQL identifiers must be contract names, got {bad or value!r}")
    return ", ".join(names)


@lru_cache(maxsize=None)
def _render(name: str, identifiers: tuple) -> str:
    given = dict(identifiers)

    def fill(m: re.Match) -> str:
        key = m.group(1)
        if key in given:
            return _identifier(given[key])
        value = getattr(c, key.upper(), None)
        if not isinstance(value, str):
            raise KeyError(f"{name}.sql: placeholder {{{{{key}}}}} is not a contract name")
        return value

    return _PLACEHOLDER.sub(fill, _text(name))


def load(name: str, **identifiers) -> str:
    """The text of `sql/<name>.sql`; `{{ x }}` is filled from `identifiers` (contract names only), else the contract."""
    return _render(name, tuple(sorted(identifiers.items())))


@lru_cache(maxsize=None)
def variables(name: str) -> frozenset[str]:
    """The session variables `sql/<name>.sql` reads through getvariable('...') (comments ignored)."""
    return frozenset(_VARIABLE.findall(_COMMENT.sub("", load(name))))


def run(con, name: str, params: dict | list | None = None, **identifiers):
    """Execute `sql/<name>.sql` on a DuckDB connection with bound parameters; returns the cursor.

    A consumer file reads getvariable('user_id') where a build file binds $user_id. Given params, each
    variable named in them is bound as a parameter instead (DuckDB folds getvariable() to a constant
    at bind time, so the answer is the one `set variable user_id = ...` gives in the CLI, without an
    extra round trip or session state left behind). Variables not in params stay getvariable().
    """
    text = load(name, **identifiers)
    reads = variables(name) if not identifiers else frozenset()
    if params is not None and reads:
        if not isinstance(params, dict):
            raise TypeError(f"sql/{name}.sql reads session variables: pass params as a dict")
        unknown = sorted(set(params) - reads)
        if unknown:
            raise KeyError(f"sql/{name}.sql reads no variable {unknown[0]!r} (it reads: {', '.join(sorted(reads))})")
        text = _VARIABLE.sub(lambda m: f"${m.group(1)}" if m.group(1) in params else m.group(0), text)
    return con.execute(text, params) if params is not None else con.execute(text)


def rows(con, name: str, params: dict | list | None = None, **identifiers) -> list[tuple]:
    """Run a query file and fetch all rows (fetchall closes the result, unlike fetchone in DuckDB 2)."""
    return run(con, name, params, **identifiers).fetchall()
