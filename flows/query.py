"""`lensflow query`: a consumer's question, answered by its file in sql/ against the live warehouse (read-only), or
a read-only statement of the user's own (`query sql`)."""

from __future__ import annotations

from tasks.core.settings import Paths

QUERIES = {  # CLI question -> (sql file, parameters it needs)
    "top10": ("query_top10_for_user", ("user_id",)),
    "similar": ("query_similar_items_for_item", ("item_id",)),
    "because": ("query_because_you_watched", ("user_id",)),
    "most-recommended": ("query_most_recommended", ()),
    "coverage": ("query_coverage_by_genre", ()),
    "publications": ("query_publications", ()),
    "health": ("query_health", ()),
}


def query(a, paths: Paths) -> int:
    """Print the answer (at most --limit rows); a wrong option, id or statement is one ConfigError/NotFound line."""
    import duckdb   # DuckDB and the stores load only when a query runs: the CLI's start stays light

    from tasks.core import contract as c
    from tasks.core import sql
    from tasks.stores import warehouse
    from tasks.core.errors import ConfigError, NotFound

    needs = ("sql",) if a.question == "sql" else QUERIES[a.question][1]
    flags = {"sql": ("--sql", a.sql), c.USER_ID: ("--user", a.user), c.ITEM_ID: ("--item", a.item)}
    unused = [flag for key, (flag, value) in flags.items() if value is not None and key not in needs]
    if unused:  # a question that ignores an option would answer another question than the one asked
        takes = " and ".join(flags[key][0] for key in needs) or "none of --user, --item, --sql"
        raise ConfigError(f"query {a.question} does not use {unused[0]} (it takes {takes})")
    if not paths.warehouse.is_file():
        raise NotFound(f"no warehouse at {paths.warehouse}: run `lensflow run` first")
    con = warehouse.connect_readonly(paths)
    try:
        if a.question == "sql":
            if not a.sql:
                raise ConfigError("query sql needs --sql 'select ...'")
            # read-only attach: a write to the warehouse fails; locked session: no file access either
            sql.run(con, "lock_down_session")
            try:  # the relation runs lazily: a runtime error (a bad cast, say) surfaces when fetched
                rel = con.sql(a.sql)
                frame = rel.df() if rel is not None else None
            except duckdb.Error as e:
                raise ConfigError(f"query refused: {e}") from e
        else:
            name, needs = QUERIES[a.question]
            given = {c.USER_ID: a.user, c.ITEM_ID: a.item}
            missing = [p for p in needs if given[p] is None]
            if missing:
                raise ConfigError(f"query {a.question} needs --{missing[0].split('_')[0]}")
            # parameter -> (what it is, the table it must be in)
            known_ids = {c.USER_ID: ("user", c.USERS), c.ITEM_ID: ("item", c.MOVIES)}
            try:
                for p in needs:  # an id the source tables lack is a user error, not an empty answer
                    what, table = known_ids[p]
                    known, n, low, high = sql.rows(con, "known_id", {"id": given[p]}, table=table, column=p)[0]
                    if not known:
                        raise NotFound(f"{what} {given[p]} is not in the {table} table ({n:,} {table}, ids {low}..{high})")
                # the file a consumer runs in the DuckDB CLI; sql.run binds the ids for its getvariable()s
                frame = sql.run(con, name, {p: given[p] for p in needs} or None).df()
            except duckdb.CatalogException as e:
                raise NotFound(f"{str(e).splitlines()[0]} in {paths.warehouse}: run `lensflow run` first") from e
        if frame is not None:
            import pandas as pd

            limit = a.limit or (len(frame) if a.question == "health" else 10)
            with pd.option_context("display.max_rows", max(limit, 10), "display.width", 200,
                                   "display.max_colwidth", 60):
                print(frame.head(limit).to_string(index=False))
    finally:
        con.close()
    return 0
