"""Parse and validate the MovieLens 100k files into typed tables (the rules: tasks/sources/input_rules.py).

Checks run vectorised (pyarrow.csv + numpy/pandas); only after a check fails do we look for the
first offending line, so a valid 25M-line u.data never meets a per-line Python loop. Every
failure is an `InputError` naming the file, the 1-based line, the field where there is one, and the
rule. The input rules (integers, times, encodings, sizes, line lengths) are listed in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.core import contract as c
from tasks.core.errors import InputError
from tasks.sources.input_rules import (
    GENRES_FILE, ITEMS_FILE, OCCUPATIONS_FILE, RATINGS_FIELDS, RATINGS_FILE, REQUIRED_FILES, USERS_FILE, check_files,
    decode, file_lines, first_bad_line, int_problem, text_lines,
)
from tasks.sources.text_tables import (
    check_ranges, fail_at, int_column, parse_dates, read_table, scan_ratings_bytes, text_table, unique_ids,
)

PARSER_VERSION = "2"        # part of the content hash: a parser change makes a new snapshot

# Arrow types of the tables handed to the lake and warehouse.
SCHEMAS = {
    c.RATINGS: pa.schema([(c.USER_ID, pa.int32()), (c.ITEM_ID, pa.int32()), (c.RATING, pa.int8()),
                          (c.RATED_AT, pa.timestamp("us"))]),
    c.MOVIES: pa.schema([(c.ITEM_ID, pa.int32()), (c.TITLE, pa.string()), (c.RELEASE_DATE, pa.date32()),
                         (c.VIDEO_RELEASE_DATE, pa.date32()), (c.IMDB_URL, pa.string()),
                         (c.GENRES_LIST, pa.list_(pa.string()))]
                        + [(col, pa.bool_()) for col in c.GENRE_COLUMNS]),
    c.USERS: pa.schema([(c.USER_ID, pa.int32()), (c.AGE, pa.int16()), (c.GENDER, pa.string()),
                        (c.OCCUPATION, pa.string()), (c.ZIP_CODE, pa.string())]),
    c.GENRES: pa.schema([(c.GENRE_ID, pa.int16()), (c.GENRE_NAME, pa.string()), (c.GENRE_COLUMN, pa.string())]),
}


@dataclass
class SourceTables:
    """The validated source tables as DataFrames typed per `SCHEMAS`, and the encoding each text file had."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame
    genres: pd.DataFrame
    encodings: dict[str, str] = dc_field(default_factory=dict)

    def as_dict(self) -> dict[str, pd.DataFrame]:
        """Tables keyed by their contract name."""
        return {c.RATINGS: self.ratings, c.MOVIES: self.movies, c.USERS: self.users, c.GENRES: self.genres}


# --- the files ------------------------------------------------------------------------------------

def _trimmed_lines(path: Path, encodings: dict | None) -> list[tuple[int, str]]:
    """Decoded lines of a small file, trailing blank lines dropped."""
    text, encoding = decode(path)
    if encodings is not None:
        encodings[path.name] = encoding
    lines = list(text_lines(text))
    while lines and not lines[-1][1].strip():
        lines.pop()
    return lines


def parse_genres(path: Path, encodings: dict | None = None) -> pd.DataFrame:
    """u.genre (`name|id`, trailing blank lines allowed): must list exactly contract.GENRE_NAMES in order."""
    lines = _trimmed_lines(path, encodings)
    rows = []
    for no, line in lines:
        fields = line.split("|")
        if len(fields) != 2:
            raise InputError(path.name, no, "column-count", f"expected 2 fields 'name|id', got {len(fields)}")
        name, gid = fields
        k = len(rows)
        problem = int_problem(gid, c.GENRE_ID)
        if problem:
            raise InputError(path.name, no, problem[0], problem[1], field=c.GENRE_ID)
        if int(gid) != k:
            raise InputError(path.name, no, "genre-id", f"genre id must be {k} (flag position), got {gid!r}")
        if k >= len(c.GENRE_NAMES) or name != c.GENRE_NAMES[k]:
            want = c.GENRE_NAMES[k] if k < len(c.GENRE_NAMES) else "no more genres"
            raise InputError(path.name, no, "genre-names", f"expected {want!r}, got {name!r}")
        rows.append((k, name, c.GENRE_COLUMNS[k]))
    if len(rows) != len(c.GENRE_NAMES):
        raise InputError(path.name, len(lines) + 1, "genre-names",
                         f"expected {len(c.GENRE_NAMES)} genres, found {len(rows)}")
    df = pd.DataFrame(rows, columns=list(c.GENRES_COLUMNS))
    return df.astype({c.GENRE_ID: "int16"})


def parse_occupations(path: Path, encodings: dict | None = None) -> list[str]:
    """u.occupation: one non-empty name per line (trailing blank lines allowed)."""
    lines = _trimmed_lines(path, encodings)
    for no, line in lines:
        if not line.strip() or "|" in line:
            raise InputError(path.name, no, "occupation-name", f"expected one occupation name, got {line!r}")
    return [line.strip() for _, line in lines]


def parse_ratings(path: Path) -> pd.DataFrame:
    """u.data: user id, item id, rating 1..5, unix time 1970..2099 (tab-separated); (user, item) pairs unique."""
    path = Path(path)
    f = path.name
    lines = lambda: file_lines(path)  # noqa: E731
    if not scan_ratings_bytes(path):          # a byte that is no digit, tab or line end; or a long line
        err = first_bad_line(lines(), "\t", RATINGS_FIELDS, f)
        if err:
            raise err
    t = read_table(path, f, "\t", RATINGS_FIELDS, lines, int_columns=True)
    user, item, rating, ts = (t[f"f{k}"].to_numpy() for k in range(4))
    check_ranges(f, list(zip(RATINGS_FIELDS, (user, item, rating, ts))))
    key = (user << 32) | item
    ordered = np.sort(key)                      # a sort is ~10x faster than a hash-based duplicated()
    if (ordered[1:] == ordered[:-1]).any():
        i = int(np.flatnonzero(pd.Series(key).duplicated().to_numpy())[0])
        first = int(np.flatnonzero(key == key[i])[0])
        raise InputError(f, i + 1, "unique-pair",
                         f"user {user[i]} rated item {item[i]} again (first on line {first + 1})")
    return pd.DataFrame({
        c.USER_ID: user.astype(np.int32), c.ITEM_ID: item.astype(np.int32),
        c.RATING: rating.astype(np.int8), c.RATED_AT: (ts * 1_000_000).astype("datetime64[us]"),
    })


def parse_items(path: Path, encodings: dict | None = None) -> pd.DataFrame:
    """u.item: id|title|release date|video release date|IMDb URL|19 genre flags 0/1 (UTF-8 or latin-1)."""
    f = path.name
    n_genres = len(c.GENRE_NAMES)
    t, encoding = text_table(path, "|", (c.ITEM_ID,) + (None,) * (4 + n_genres))
    if encodings is not None:
        encodings[f] = encoding
    item = int_column(t, "f0", f, c.ITEM_ID)
    unique_ids(item, f, c.ITEM_ID)
    title = pd.Series(t["f1"].to_numpy(zero_copy_only=False), dtype=object)
    fail_at((title.str.strip() == "").to_numpy(), f, "title", lambda i: "title must not be empty", c.TITLE)
    release = parse_dates(t["f2"], f, c.RELEASE_DATE)
    video = parse_dates(t["f3"], f, c.VIDEO_RELEASE_DATE)
    url = pd.Series(t["f4"].to_numpy(zero_copy_only=False), dtype=object)
    flags = np.empty((t.num_rows, n_genres), dtype=bool)
    for k, col in enumerate(c.GENRE_COLUMNS):
        v = t[f"f{5 + k}"].to_numpy(zero_copy_only=False)
        fail_at((v != "0") & (v != "1"), f, "genre-flag",
                 lambda i: f"genre flag '{c.GENRE_NAMES[k]}' must be 0 or 1, got {v[i]!r}", col)
        flags[:, k] = v == "1"
    names = np.array(c.GENRE_NAMES, dtype=object)
    df = pd.DataFrame({
        c.ITEM_ID: item.astype(np.int32), c.TITLE: title, c.RELEASE_DATE: release,
        c.VIDEO_RELEASE_DATE: video, c.IMDB_URL: url.where(url != "", None),
        c.GENRES_LIST: [list(names[row]) for row in flags],
    })
    for k, col in enumerate(c.GENRE_COLUMNS):
        df[col] = flags[:, k]
    return df


def parse_users(path: Path, occupations: list[str] | None = None, encodings: dict | None = None) -> pd.DataFrame:
    """u.user: id|age|gender M/F|occupation|zip code; occupation from u.occupation when given."""
    f = path.name
    t, encoding = text_table(path, "|", (c.USER_ID, c.AGE, None, None, None))
    if encodings is not None:
        encodings[f] = encoding
    user = int_column(t, "f0", f, c.USER_ID)
    unique_ids(user, f, c.USER_ID)
    age = int_column(t, "f1", f, c.AGE)
    gender = t["f2"].to_numpy(zero_copy_only=False)
    fail_at((gender != "M") & (gender != "F"), f, "gender",
             lambda i: f"gender must be 'M' or 'F', got {gender[i]!r}", c.GENDER)
    occ = t["f3"].to_numpy(zero_copy_only=False)
    if occupations is not None:
        fail_at(~np.isin(occ, occupations), f, "occupation",
                 lambda i: f"occupation {occ[i]!r} is not listed in u.occupation", c.OCCUPATION)
    zips = t["f4"].to_numpy(zero_copy_only=False)
    fail_at(zips == "", f, "zip-code", lambda i: "zip code must not be empty", c.ZIP_CODE)
    return pd.DataFrame({c.USER_ID: user.astype(np.int32), c.AGE: age.astype(np.int16),
                         c.GENDER: pd.Series(gender, dtype=object), c.OCCUPATION: pd.Series(occ, dtype=object),
                         c.ZIP_CODE: pd.Series(zips, dtype=object)})


def _member(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """np.isin for positive ids, via a lookup table when the ids are small (MovieLens ids are)."""
    top = int(max(values.max(initial=0), allowed.max(initial=0)))
    if top > 50_000_000:
        return np.isin(values, allowed)
    known = np.zeros(top + 1, dtype=bool)
    known[allowed] = True
    return known[values]


def check_references(ratings: pd.DataFrame, movies: pd.DataFrame, users: pd.DataFrame) -> None:
    """Every rated user is in u.user and every rated item in u.item."""
    for col, table, file in ((c.USER_ID, users, USERS_FILE), (c.ITEM_ID, movies, ITEMS_FILE)):
        ids = ratings[col].to_numpy()
        missing = ~_member(ids, table[col].to_numpy())
        fail_at(missing, RATINGS_FILE, "known-" + col.split("_")[0],
                 lambda i: f"{col} {ids[i]} is not in {file}", col)


def read_sources(folder) -> SourceTables:
    """Parse and validate a MovieLens 100k-format folder; raises InputError on the first problem."""
    folder = Path(folder)
    check_files(folder)
    encodings: dict[str, str] = {}
    genres = parse_genres(folder / GENRES_FILE, encodings)
    occ_path = folder / OCCUPATIONS_FILE
    occupations = parse_occupations(occ_path, encodings) if occ_path.is_file() else None
    movies = parse_items(folder / ITEMS_FILE, encodings)
    users = parse_users(folder / USERS_FILE, occupations, encodings)
    ratings = parse_ratings(folder / RATINGS_FILE)
    encodings[RATINGS_FILE] = "ascii"          # digits, tabs and line ends only (the integer rule)
    check_references(ratings, movies, users)
    return SourceTables(ratings=ratings, movies=movies, users=users, genres=genres,
                        encodings=dict(sorted(encodings.items())))


def content_hash(folder) -> str:
    """SHA-256 (first 16 hex digits) of the source files' names and bytes, plus the parser version.

    check_files runs first, so a file that is plainly not MovieLens text is refused before it is read whole.
    """
    folder = Path(folder)
    check_files(folder)
    h = hashlib.sha256(f"lensflow-movielens-parser-{PARSER_VERSION}\n".encode())
    for name in REQUIRED_FILES + (OCCUPATIONS_FILE,):
        p = folder / name
        if not p.is_file():
            continue
        h.update(f"{name}\n{p.stat().st_size}\n".encode())
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def to_arrow(name: str, df: pd.DataFrame) -> pa.Table:
    """A source table as Arrow with the contract schema (column order and types)."""
    schema = SCHEMAS[name]
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
