"""`sql/` agrees with the contract (tasks/core/contract.py): placeholders, declared checks, published columns."""

from __future__ import annotations

import re

import duckdb
import pytest

from tasks.stores import checks
from tasks.core import contract as c
from tasks.core import sql

PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
RULE_SLOTS = {"table", "key", "column", "other", "other_column", "group_by"}   # filled per declared check
SLOT_FILES = ("check_", "known_id")   # the generic files that take identifiers (tasks/stores/checks.py, the CLI's id lookup)
SQL_FILES = sorted(sql.SQL_DIR.glob("*.sql"))


@pytest.mark.parametrize("path", SQL_FILES, ids=[p.name for p in SQL_FILES])
def test_every_placeholder_is_a_contract_name_or_a_rule_slot(path):
    for key in PLACEHOLDER.findall(path.read_text()):
        if key in RULE_SLOTS:
            assert path.name.startswith(SLOT_FILES), f"{path.name}: rule slot {{{{{key}}}}} outside a generic file"
        else:
            assert isinstance(getattr(c, key.upper(), None), str), f"{path.name}: {{{{{key}}}}} is not in the contract"


def test_sql_is_lowercase_apart_from_strings_and_comments():
    for path in SQL_FILES:
        code = re.sub(r"--.*", "", re.sub(r"'[^']*'", "''", path.read_text()))
        assert not re.search(r"\b(SELECT|FROM|WHERE|JOIN|WITH|GROUP BY|ORDER BY)\b", code), path.name


def test_every_declared_check_renders_and_names_its_file():
    declared = [chk for table in checks.TABLE_CHECKS for chk in checks.TABLE_CHECKS[table]]
    assert len({chk.name for chk in declared}) == len(declared), "two declarations of one check"
    for chk in declared:
        assert (sql.SQL_DIR / f"check_{chk.rule}.sql").is_file(), chk.sql_file
        text = sql.load(f"check_{chk.rule}", table=chk.table, **dict(chk.identifiers))
        assert "{{" not in text, chk.name


def test_a_check_refuses_identifiers_outside_the_contract():
    with pytest.raises(KeyError, match="contract names"):
        sql.load("check_not_null", table=c.RATINGS, column="rating; drop table ratings")


@pytest.mark.parametrize("table,columns", [(c.RECOMMENDATIONS, c.RECOMMENDATIONS_COLUMNS),
                                           (c.SIMILAR_ITEMS, c.SIMILAR_ITEMS_COLUMNS)])
def test_published_tables_are_built_with_exactly_the_contract_columns(tmp_path, table, columns):
    con = duckdb.connect()
    try:
        empty = tmp_path / "empty.parquet"
        con.execute(f"copy (select {', '.join(f'null::varchar as {col}' for col in columns)} limit 0) "
                    f"to '{empty}' (format parquet)")
        sql.run(con, table, {"path": str(empty)})
        built = tuple(row[0] for row in con.sql(f"describe {table}").fetchall())
    finally:
        con.close()
    assert built == columns
