"""Parse and validate the MovieLens 100k files into typed tables.

Checks run vectorised (pyarrow.csv + numpy/pandas); only after a check fails do we look for the
first offending line, so a valid 25M-line u.data never meets a per-line Python loop. Every
failure is an `InputError` naming the file, the 1-based line and the rule.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tasks import contract as c
from tasks.errors import InputError

RATINGS_FILE, ITEMS_FILE, USERS_FILE, GENRES_FILE, OCCUPATIONS_FILE = (
    "u.data", "u.item", "u.user", "u.genre", "u.occupation")
REQUIRED_FILES = (RATINGS_FILE, ITEMS_FILE, USERS_FILE, GENRES_FILE)
ENCODING = "latin-1"        # u.item titles are latin-1 (e.g. 'Misérables, Les (1995)')
DATE_FORMAT = "dd-Mon-yyyy" # 01-Jan-1995
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
_MONTHS = {m: k for k, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
PARSER_VERSION = "1"        # part of the content hash: a parser change makes a new snapshot

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
    """The validated source tables as DataFrames typed per `SCHEMAS`."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame
    genres: pd.DataFrame

    def as_dict(self) -> dict[str, pd.DataFrame]:
        """Tables keyed by their contract name."""
        return {c.RATINGS: self.ratings, c.MOVIES: self.movies, c.USERS: self.users, c.GENRES: self.genres}


# --- reading delimited text ---------------------------------------------------------------------

def _first_bad_line(path: Path, sep: str, n_cols: int, int_cols=()) -> tuple[int, str, str]:
    """Slow path after a vectorised read failed: (line, rule, detail) of the first bad line."""
    with open(path, encoding=ENCODING, newline="") as f:
        for no, raw in enumerate(f, start=1):
            line = raw.rstrip("\n").rstrip("\r")
            fields = line.split(sep)
            if len(fields) != n_cols:
                return no, "column-count", f"expected {n_cols} fields separated by {sep!r}, got {len(fields)}"
            for k in int_cols:
                if not fields[k].strip().lstrip("-").isdigit():
                    return no, "integer", f"field {k + 1} must be an integer, got {fields[k]!r}"
    return 0, "parse", "unreadable file"


def _read_text_table(path: Path, sep: str, n_cols: int, *, types=None) -> pa.Table:
    """Read a headerless delimited file; every line must have n_cols fields (no quoting, no blank lines)."""
    names = [f"f{k}" for k in range(n_cols)]
    types = types or {}
    if path.stat().st_size == 0:  # pyarrow would only say "Empty CSV file"
        raise InputError(path.name, None, "not-empty", f"the file is empty; expected lines of {n_cols} fields")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, encoding=ENCODING, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: types.get(n, pa.string()) for n in names},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as e:
        int_cols = [k for k, n in enumerate(names) if pa.types.is_integer(types.get(n, pa.string()))]
        line, rule, detail = _first_bad_line(path, sep, n_cols, int_cols)
        raise InputError(path.name, line or None, rule, detail if line else f"{detail}: {e}") from None
    for name in names:                 # a blank line reads as a row of nulls
        if table[name].null_count:
            first = int(np.flatnonzero(table[name].is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(path.name, first + 1, "column-count", f"expected {n_cols} fields, got an empty line")
    return table


def _require_int(table: pa.Table, col: str, file: str, field: str) -> np.ndarray:
    """A string column as int64; names the first line that is not an integer."""
    s = table[col]
    ok = pc.match_substring_regex(pc.utf8_trim_whitespace(s), r"^-?[0-9]{1,9}$")
    bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    if bad.size:
        raise InputError(file, int(bad[0]) + 1, "integer", f"{field} must be an integer, got {s[int(bad[0])].as_py()!r}",
                         field=field)
    return pc.cast(pc.utf8_trim_whitespace(s), pa.int64()).to_numpy()


def _fail_at(mask: np.ndarray, file: str, rule: str, detail, field: str | None = None):
    """Raise for the first True in mask (row i is line i + 1); detail(i) builds the message."""
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        raise InputError(file, i + 1, rule, detail(i), field=field)


def _to_date(text: str):
    """'01-Jan-1995' -> date, '' -> None, anything else -> False (month names mapped by hand:
    strptime's %b follows the process locale, MovieLens is English)."""
    if not text:
        return None
    m = _DATE.fullmatch(text)
    month = _MONTHS.get(m.group(2).title()) if m else None
    if month is None:
        return False
    try:
        return datetime.date(int(m.group(3)), month, int(m.group(1)))
    except ValueError:
        return False


def _parse_dates(values: pa.ChunkedArray, file: str, field: str) -> pd.Series:
    """dd-Mon-yyyy dates; empty means unknown (null); anything else is an error (catalogue-sized input)."""
    raw = [v.strip() for v in values.to_pylist()]
    dates = [_to_date(v) for v in raw]
    _fail_at(np.array([d is False for d in dates], dtype=bool), file, "date-format",
             lambda i: f"{field} must look like 01-Jan-1995 or be empty, got {raw[i]!r}", field)
    return pd.Series(dates, dtype=object)


def _unique_ids(ids: np.ndarray, file: str, field: str) -> None:
    _fail_at(ids < 1, file, "positive-id", lambda i: f"{field} must be >= 1, got {ids[i]}", field)
    dup = pd.Series(ids).duplicated().to_numpy()
    _fail_at(dup, file, "unique-id", lambda i: f"{field} {ids[i]} appears more than once", field)


# --- the files ------------------------------------------------------------------------------------

def parse_genres(path: Path) -> pd.DataFrame:
    """u.genre (`name|id`, trailing blank lines allowed): must list exactly contract.GENRE_NAMES in order."""
    lines = path.read_text(encoding=ENCODING).split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for no, line in enumerate(lines, start=1):
        fields = line.rstrip("\r").split("|")
        if len(fields) != 2:
            raise InputError(path.name, no, "column-count", f"expected 2 fields 'name|id', got {len(fields)}")
        name, gid = fields
        k = len(rows)
        if not gid.strip().isdigit() or int(gid) != k:
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


def parse_occupations(path: Path) -> list[str]:
    """u.occupation: one non-empty name per line (trailing blank lines allowed)."""
    lines = path.read_text(encoding=ENCODING).split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    for no, line in enumerate(lines, start=1):
        if not line.strip() or "|" in line:
            raise InputError(path.name, no, "occupation-name", f"expected one occupation name, got {line!r}")
    return [line.strip() for line in lines]


def parse_ratings(path: Path) -> pd.DataFrame:
    """u.data: user id, item id, rating 1..5, unix time (tab-separated); (user, item) pairs unique."""
    f = path.name
    types = {"f0": pa.int64(), "f1": pa.int64(), "f2": pa.int64(), "f3": pa.int64()}
    t = _read_text_table(path, "\t", 4, types=types)
    user, item, rating, ts = (t[f"f{k}"].to_numpy() for k in range(4))
    _fail_at(user < 1, f, "positive-id", lambda i: f"user id must be >= 1, got {user[i]}", c.USER_ID)
    _fail_at(item < 1, f, "positive-id", lambda i: f"item id must be >= 1, got {item[i]}", c.ITEM_ID)
    _fail_at((user > np.iinfo(np.int32).max) | (item > np.iinfo(np.int32).max), f, "id-range",
             lambda i: "ids must fit a 32-bit integer")
    _fail_at((rating < 1) | (rating > 5), f, "rating-range",
             lambda i: f"rating must be an integer 1..5, got {rating[i]}", c.RATING)
    _fail_at(ts < 0, f, "timestamp", lambda i: f"timestamp must be unix seconds >= 0, got {ts[i]}", c.RATED_AT)
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


def parse_items(path: Path) -> pd.DataFrame:
    """u.item: id|title|release date|video release date|IMDb URL|19 genre flags 0/1 (latin-1)."""
    f = path.name
    n_genres = len(c.GENRE_NAMES)
    t = _read_text_table(path, "|", 5 + n_genres)
    item = _require_int(t, "f0", f, c.ITEM_ID)
    _unique_ids(item, f, c.ITEM_ID)
    title = pd.Series(t["f1"].to_numpy(zero_copy_only=False), dtype=object)
    _fail_at((title.str.strip() == "").to_numpy(), f, "title", lambda i: "title must not be empty", c.TITLE)
    release = _parse_dates(t["f2"], f, c.RELEASE_DATE)
    video = _parse_dates(t["f3"], f, c.VIDEO_RELEASE_DATE)
    url = pd.Series(t["f4"].to_numpy(zero_copy_only=False), dtype=object)
    flags = np.empty((t.num_rows, n_genres), dtype=bool)
    for k, col in enumerate(c.GENRE_COLUMNS):
        v = t[f"f{5 + k}"].to_numpy(zero_copy_only=False)
        _fail_at((v != "0") & (v != "1"), f, "genre-flag",
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


def parse_users(path: Path, occupations: list[str] | None = None) -> pd.DataFrame:
    """u.user: id|age|gender M/F|occupation|zip code; occupation from u.occupation when given."""
    f = path.name
    t = _read_text_table(path, "|", 5)
    user = _require_int(t, "f0", f, c.USER_ID)
    _unique_ids(user, f, c.USER_ID)
    age = _require_int(t, "f1", f, c.AGE)
    _fail_at((age < 0) | (age > 120), f, "age-range", lambda i: f"age must be 0..120, got {age[i]}", c.AGE)
    gender = t["f2"].to_numpy(zero_copy_only=False)
    _fail_at((gender != "M") & (gender != "F"), f, "gender",
             lambda i: f"gender must be 'M' or 'F', got {gender[i]!r}", c.GENDER)
    occ = t["f3"].to_numpy(zero_copy_only=False)
    if occupations is not None:
        _fail_at(~np.isin(occ, occupations), f, "occupation",
                 lambda i: f"occupation {occ[i]!r} is not listed in u.occupation", c.OCCUPATION)
    zips = t["f4"].to_numpy(zero_copy_only=False)
    _fail_at(zips == "", f, "zip-code", lambda i: "zip code must not be empty", c.ZIP_CODE)
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
        _fail_at(missing, RATINGS_FILE, "known-" + col.split("_")[0],
                 lambda i: f"{col} {ids[i]} is not in {file}", col)


def _check_files(folder: Path) -> None:
    missing = [n for n in REQUIRED_FILES if not (folder / n).is_file()]
    if missing:
        raise InputError(str(folder), None, "files-present", f"missing {', '.join(missing)}")


def read_sources(folder) -> SourceTables:
    """Parse and validate a MovieLens 100k-format folder; raises InputError on the first problem."""
    folder = Path(folder)
    _check_files(folder)
    genres = parse_genres(folder / GENRES_FILE)
    occ_path = folder / OCCUPATIONS_FILE
    occupations = parse_occupations(occ_path) if occ_path.is_file() else None
    movies = parse_items(folder / ITEMS_FILE)
    users = parse_users(folder / USERS_FILE, occupations)
    ratings = parse_ratings(folder / RATINGS_FILE)
    check_references(ratings, movies, users)
    return SourceTables(ratings=ratings, movies=movies, users=users, genres=genres)


def content_hash(folder) -> str:
    """SHA-256 (first 16 hex digits) of the source files' names and bytes, plus the parser version."""
    folder = Path(folder)
    _check_files(folder)
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
