"""Table checks, declared per table as dbt declares schema tests: a few generic rules, written once.

Each rule is one SQL file `sql/check_<rule>.sql` that returns the offending rows (none = pass); a
`Check` names the rule, the table and the columns it applies to. `TABLE_CHECKS` says which rules hold
for which table; `ALWAYS` checks hold in every warehouse build, `AT_PUBLISH` ones only against the
ratings a publication was scored from (ratings grow after a publish; the warehouse filters instead).
A few table-specific rules (the split tables, genre completeness, row counts) are SQL files of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.core import contract as c
from tasks.core import sql

ALWAYS, AT_PUBLISH = "always", "at_publish"


@dataclass(frozen=True)
class Check:
    """One rule applied to one table: `sql/check_<rule>.sql` filled with these identifiers and parameters."""

    rule: str
    table: str
    identifiers: tuple = ()          # ((placeholder, contract name or tuple of names), ...)
    params: tuple = ()               # ((parameter, value), ...) bound as $parameter
    when: str = ALWAYS

    @property
    def name(self) -> str:
        """Readable id, e.g. `recommendations.unique(user_id, rank)`."""
        shown = ", ".join(", ".join(v) if isinstance(v, tuple) else v for _, v in self.identifiers)
        return f"{self.table}.{self.rule}({shown})" if shown else f"{self.table}.{self.rule}"

    @property
    def file(self) -> str:
        """Name of the rule's SQL file in sql/ (rules are declared here, never taken from input)."""
        return "check_" + self.rule

    @property
    def sql_file(self) -> str:
        return f"sql/{self.file}.sql"

    def offending_rows(self, con, extra_params: dict | None = None) -> list[dict]:
        """Run the rule on `con`; each returned row (as a dict) breaks it."""
        params = {**dict(self.params), **(extra_params or {})}
        text = sql.load(self.file, table=self.table, **dict(self.identifiers))
        used = {k: v for k, v in params.items() if f"${k}" in text}
        cur = con.execute(text, used) if used else con.execute(text)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def unique(table, *key, when=ALWAYS):
    return Check("unique", table, (("key", tuple(key)),), when=when)


def not_null(table, column, when=ALWAYS):
    return Check("not_null", table, (("column", column),), when=when)


def accepted_values(table, column, values, when=ALWAYS):
    return Check("accepted_values", table, (("column", column),), (("accepted", list(values)),), when)


def in_range(table, column, low, high, when=ALWAYS):
    return Check("in_range", table, (("column", column),), (("low", low), ("high", high)), when)


def in_range_or_null(table, column, low, high, when=ALWAYS):
    return Check("in_range_or_null", table, (("column", column),), (("low", low), ("high", high)), when)


def dense_ranks(table, group_by, when=ALWAYS):
    return Check("dense_ranks", table, (("group_by", group_by),), when=when)


def sorted_by_rank(table, group_by, column, when=ALWAYS):
    return Check("sorted", table, (("group_by", group_by), ("column", column)), when=when)


def not_self(table, column, other_column, when=ALWAYS):
    return Check("not_self", table, (("column", column), ("other_column", other_column)), when=when)


def known_ids(table, column, other, other_column=None, when=ALWAYS):
    return Check("known_ids", table, (("column", column), ("other", other),
                                      ("other_column", other_column or column)), when=when)


def not_in(table, other, *key, when=ALWAYS):
    return Check("not_in", table, (("other", other), ("key", tuple(key))), when=when)


def singular(name: str, table: str, when=ALWAYS, **params) -> Check:
    """A table-specific rule with its own file `sql/check_<name>.sql`; other parameters come at run time."""
    return Check(name, table, params=tuple(params.items()), when=when)


TABLE_CHECKS: dict[str, tuple[Check, ...]] = {
    c.RATINGS: (
        unique(c.RATINGS, c.USER_ID, c.ITEM_ID),
        *(not_null(c.RATINGS, col) for col in c.RATINGS_COLUMNS),
        in_range(c.RATINGS, c.RATING, c.RATING_MIN, c.RATING_MAX),
        known_ids(c.RATINGS, c.USER_ID, c.USERS),
        known_ids(c.RATINGS, c.ITEM_ID, c.MOVIES),
    ),
    c.MOVIES: (
        unique(c.MOVIES, c.ITEM_ID),
        not_null(c.MOVIES, c.ITEM_ID),
        not_null(c.MOVIES, c.TITLE),
        singular("movies_have_genres", c.MOVIES),
    ),
    c.USERS: (
        unique(c.USERS, c.USER_ID),
        not_null(c.USERS, c.USER_ID),
        accepted_values(c.USERS, c.GENDER, ("M", "F")),
    ),
    c.GENRES: (singular("genres_complete", c.GENRES, n_genres=len(c.GENRE_NAMES)),),
    c.RECOMMENDATIONS: (
        singular("publication_rows", c.RECOMMENDATIONS),   # both published tables carry this publication's id
        unique(c.RECOMMENDATIONS, c.USER_ID, c.RANK),
        dense_ranks(c.RECOMMENDATIONS, c.USER_ID),
        sorted_by_rank(c.RECOMMENDATIONS, c.USER_ID, c.SCORE),
        accepted_values(c.RECOMMENDATIONS, c.SOURCE, c.SOURCES),
        in_range_or_null(c.RECOMMENDATIONS, c.PREDICTED_RATING, c.RATING_MIN, c.RATING_MAX),
        not_in(c.RECOMMENDATIONS, c.RATINGS, c.USER_ID, c.ITEM_ID, when=AT_PUBLISH),
        known_ids(c.RECOMMENDATIONS, c.ITEM_ID, c.MOVIES, when=AT_PUBLISH),
        known_ids(c.RECOMMENDATIONS, c.USER_ID, c.USERS, when=AT_PUBLISH),
    ),
    c.SIMILAR_ITEMS: (
        unique(c.SIMILAR_ITEMS, c.ITEM_ID, c.RANK),
        dense_ranks(c.SIMILAR_ITEMS, c.ITEM_ID),
        sorted_by_rank(c.SIMILAR_ITEMS, c.ITEM_ID, c.SIMILARITY),
        in_range(c.SIMILAR_ITEMS, c.SIMILARITY, -1.0001, 1.0001),   # a similarity, with float slack
        not_self(c.SIMILAR_ITEMS, c.ITEM_ID, c.SIMILAR_ITEM_ID),
        accepted_values(c.SIMILAR_ITEMS, c.SOURCE, c.SIMILARITY_SOURCES),
        known_ids(c.SIMILAR_ITEMS, c.ITEM_ID, c.MOVIES, when=AT_PUBLISH),
        known_ids(c.SIMILAR_ITEMS, c.SIMILAR_ITEM_ID, c.MOVIES, c.ITEM_ID, when=AT_PUBLISH),
    ),
}


class CheckFailed(RuntimeError):
    """A check returned rows: the data breaks a declared rule."""

    def __init__(self, check: Check, sample: list[dict], context: str = ""):
        self.check, self.sample = check, sample
        super().__init__(f"{context}check {check.name} ({check.sql_file}) failed, {len(sample)} offending "
                         f"row(s) shown, e.g. {sample[0] if sample else {}}")


def checks_for(tables, phase: str = ALWAYS) -> list[Check]:
    """The declared checks of these tables for one phase (AT_PUBLISH includes the ALWAYS ones)."""
    wanted = {ALWAYS} if phase == ALWAYS else {ALWAYS, AT_PUBLISH}
    return [chk for table in tables for chk in TABLE_CHECKS.get(table, ()) if chk.when in wanted]


def failures(con, tables, phase: str = ALWAYS, params: dict | None = None) -> list[tuple[Check, list[dict]]]:
    """[(check, offending rows)] for every declared check of `tables` that fails on `con`."""
    out = []
    for chk in checks_for(tables, phase):
        bad = chk.offending_rows(con, params)
        if bad:
            out.append((chk, bad))
    return out


def enforce(con, tables, phase: str = ALWAYS, params: dict | None = None, context: str = "") -> None:
    """Raise CheckFailed for the first declared check of `tables` that fails."""
    for chk in checks_for(tables, phase):
        bad = chk.offending_rows(con, params)
        if bad:
            raise CheckFailed(chk, bad, context)
