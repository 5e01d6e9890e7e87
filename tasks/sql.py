"""Load and run the SQL files in `sql/`: every statement the project runs lives there."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from tasks import contract as c

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """The text of `sql/<name>.sql`, with `{{ name }}` placeholders filled from the contract only."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    text = path.read_text()

    def fill(m: re.Match) -> str:
        key = m.group(1)
        value = getattr(c, key.upper(), None)
        if not isinstance(value, str):
            raise KeyError(f"{path.name}: placeholder {{{{{key}}}}} is not a contract name")
        return value

    return _PLACEHOLDER.sub(fill, text)


def run(con, name: str, params: dict | list | None = None):
    """Execute `sql/<name>.sql` on a DuckDB connection with bound parameters; returns the relation/cursor."""
    text = load(name)
    return con.execute(text, params) if params is not None else con.execute(text)


def rows(con, name: str, params: dict | list | None = None) -> list[tuple]:
    """Run a query file and fetch all rows (fetchall closes the result, unlike fetchone in DuckDB 2)."""
    return run(con, name, params).fetchall()
