"""Parse and validate the MovieLens 100k files into typed tables.

Checks run vectorised (pyarrow.csv + numpy/pandas); only after a check fails do we look for the
first offending line, so a valid 25M-line u.data never meets a per-line Python loop. Every
failure is an `InputError` naming the file, the 1-based line, the field where there is one, and the
rule. The input rules (integers, times, encodings, sizes, line lengths) are listed in docs/reliability.md.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tasks.core import contract as c
from tasks.core.errors import InputError

RATINGS_FILE, ITEMS_FILE, USERS_FILE, GENRES_FILE, OCCUPATIONS_FILE = (
    "u.data", "u.item", "u.user", "u.genre", "u.occupation")
REQUIRED_FILES = (RATINGS_FILE, ITEMS_FILE, USERS_FILE, GENRES_FILE)
DATE_FORMAT = "dd-Mon-yyyy" # 01-Jan-1995
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
_MONTHS = {m: k for k, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
PARSER_VERSION = "2"        # part of the content hash: a parser change makes a new snapshot

# --- input rules (docs/reliability.md, "Input rules") -----------------------------------------------
# One integer rule for every integer field of every file: ASCII decimal digits and nothing else.
INTEGER_RULE = "decimal digits 0-9 only (no sign, spaces, '0x', '.', '_' or exponent)"
_DIGITS = re.compile(r"[0-9]+")               # the rule for one value (fullmatch)
_DIGITS_ARROW = r"^[0-9]+$"                    # the same rule for pyarrow.compute
_RATINGS_BYTES = b"0123456789\t\n\r"          # u.data is integers only: no other byte may appear
MAX_ID = 2**31 - 1                             # ids are stored as int32
MAX_RATED_AT = 4_102_444_799                   # 2099-12-31T23:59:59Z, unix seconds
RANGES = {  # field: (lowest, highest, rule below, rule above, what the unit is)
    c.USER_ID: (1, MAX_ID, "positive-id", "id-range", ""),
    c.ITEM_ID: (1, MAX_ID, "positive-id", "id-range", ""),
    c.RATING: (1, 5, "rating-range", "rating-range", ""),
    c.RATED_AT: (0, MAX_RATED_AT, "timestamp", "timestamp", " (unix seconds, 1970-01-01 to 2099-12-31 UTC)"),
    c.AGE: (0, 120, "age-range", "age-range", ""),
}
RATINGS_FIELDS = (c.USER_ID, c.ITEM_ID, c.RATING, c.RATED_AT)
MAX_LINE_BYTES = 8192                          # longest real line: 265 bytes (u.item)
MAX_FILE_BYTES = {                             # ML-25M in this format: u.data 616 MB, u.item 3 MB
    RATINGS_FILE: 2 << 30, ITEMS_FILE: 64 << 20, USERS_FILE: 64 << 20,
    GENRES_FILE: 64 << 10, OCCUPATIONS_FILE: 64 << 10,
}
# Text files are read as strict UTF-8 (an optional BOM dropped), else as latin-1 (what GroupLens ships);
# latin-1 is refused when the bytes also hold UTF-8 sequences (mixed encodings would become mojibake).
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_SCAN_BYTES = 1 << 24

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


# --- one value, one line --------------------------------------------------------------------------

def _range_detail(field: str, value) -> str:
    lo, hi, _, _, unit = RANGES[field]
    return f"{field} must be {lo}..{hi}{unit}, got {value}"


def range_problem(field: str, value: int | None, text: str = "") -> tuple[str, str] | None:
    """(rule, detail) when value is outside the field's range (None: too large for 64 bits)."""
    if field not in RANGES:
        return None
    lo, hi, below, above, _ = RANGES[field]
    if value is not None and value < lo:
        return below, _range_detail(field, value)
    if value is None or value > hi:
        return above, _range_detail(field, value if value is not None else (text[:24] + "..."))
    return None


def int_problem(text: str, field: str) -> tuple[str, str] | None:
    """(rule, detail) when text breaks the integer rule or the field's range, else None."""
    if not _DIGITS.fullmatch(text):
        return "integer", f"{field} must be written in {INTEGER_RULE}, got {text!r}"
    digits = text.lstrip("0") or "0"
    return range_problem(field, int(digits) if len(digits) <= 19 else None, text)


def _line_problem(no: int, line: str | None, sep: str, fields: tuple, file: str) -> InputError | None:
    """The first broken rule of one line (None: over-long); fields[k] names column k if it is an integer."""
    if line is None:
        return InputError(file, no, "line-length", f"a line may hold at most {MAX_LINE_BYTES} bytes")
    values = line.split(sep)
    if len(values) != len(fields):
        return InputError(file, no, "column-count",
                          f"expected {len(fields)} fields separated by {sep!r}, got {len(values)}")
    for name, value in zip(fields, values):
        problem = int_problem(value, name) if name else None
        if problem:
            return InputError(file, no, problem[0], problem[1], field=name)
    return None


def _first_bad_line(lines: Iterable[tuple[int, str | None]], sep: str, fields: tuple, file: str):
    """Slow path after a vectorised check failed: the InputError of the first bad line, or None."""
    for no, line in lines:
        err = _line_problem(no, line, sep, fields, file)
        if err:
            return err
    return None


def _file_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text without its line end) read with bounded memory; None for an over-long line."""
    with open(path, "rb") as f:
        no = 0
        while raw := f.readline(MAX_LINE_BYTES + 2):
            no += 1
            body = raw.rstrip(b"\n").rstrip(b"\r")
            if len(body) > MAX_LINE_BYTES:
                yield no, None
                return
            yield no, body.decode("latin-1")


def _text_lines(text: str) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of decoded file contents (a final line end starts no line)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for no, line in enumerate(lines, start=1):
        yield no, line.rstrip("\r")


# --- whole files: present, bounded, decoded ----------------------------------------------------------

def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _check_one(path: Path) -> None:
    """Fail fast on a file that cannot be MovieLens text, reading at most its first line."""
    name = path.name
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "FIFO" if stat.S_ISFIFO(st.st_mode) else "special file"
        raise InputError(name, None, "regular-file", f"is a {kind}, not a regular file")
    cap = MAX_FILE_BYTES[name]
    if st.st_size > cap:
        raise InputError(name, None, "file-size", f"{st.st_size} bytes, the ceiling for {name} is {cap} bytes")
    if st.st_size == 0:
        raise InputError(name, None, "not-empty", "the file is empty")
    try:
        with open(path, "rb") as f:
            head = f.read(MAX_LINE_BYTES + 2)
    except PermissionError as e:
        raise InputError(name, None, "readable", f"cannot be read ({e.strerror})") from None
    nul = head.find(b"\0")
    if nul >= 0:
        raise InputError(name, _line_of(head, nul), "text",
                         f"holds a NUL byte at offset {nul}: not a text file (UTF-16 or binary?)")
    if len(head) == MAX_LINE_BYTES + 2 and b"\n" not in head:
        raise InputError(name, 1, "line-length", f"a line may hold at most {MAX_LINE_BYTES} bytes")
    if name == RATINGS_FILE and head.translate(None, _RATINGS_BYTES):
        err = _first_bad_line(_file_lines(path), "\t", RATINGS_FIELDS, name)
        if err:
            raise err


def check_files(folder) -> None:
    """Every required file present, regular, within its size ceiling, not empty, and text in its first line."""
    folder = Path(folder)
    missing = [n for n in REQUIRED_FILES if not os.path.lexists(folder / n)]
    if missing:
        raise InputError(str(folder), None, "files-present", f"missing {', '.join(missing)}")
    for name in REQUIRED_FILES + (OCCUPATIONS_FILE,):
        path = folder / name
        try:
            _check_one(path)
        except FileNotFoundError:
            if name in REQUIRED_FILES:   # a dangling symbolic link
                raise InputError(str(folder), None, "files-present", f"missing {name}") from None
        except PermissionError as e:
            raise InputError(name, None, "readable", f"cannot be read ({e.strerror})") from None


def _decode(path: Path) -> tuple[str, str]:
    """(text, encoding) of a text file: strict UTF-8 ('ascii' when it is plain ASCII), else latin-1."""
    data = path.read_bytes()
    name = path.name
    if len(data) > MAX_FILE_BYTES[name]:   # grew since check_files
        raise InputError(name, None, "file-size", f"more than {MAX_FILE_BYTES[name]} bytes")
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(name, _line_of(data, nul), "text",
                         f"holds a NUL byte at offset {nul}: not a text file (UTF-16 or binary?)")
    lengths = [len(line.rstrip(b"\r")) for line in data.split(b"\n")]
    longest = int(np.argmax(lengths))
    if lengths[longest] > MAX_LINE_BYTES:
        raise InputError(name, longest + 1, "line-length", f"a line may hold at most {MAX_LINE_BYTES} bytes")
    bom = data.startswith(_UTF8_BOM)
    try:
        text = data[len(_UTF8_BOM) if bom else 0:].decode("utf-8")
        return text, "ascii" if data.isascii() else "utf-8"
    except UnicodeDecodeError as e:
        bad = e.start + (len(_UTF8_BOM) if bom else 0)
        seq = None if bom else _UTF8_SEQUENCE.search(data)
        if bom or seq:
            also = ("it starts with a UTF-8 byte order mark" if bom else
                    f"line {_line_of(data, seq.start())} holds the UTF-8 sequence {seq.group().decode('utf-8')!r}")
            raise InputError(name, _line_of(data, bad), "encoding",
                             f"byte 0x{data[bad]:02x} is not UTF-8, but {also}: mixed encodings; "
                             "re-save the file as UTF-8 (or latin-1) throughout") from None
        return data.decode("latin-1"), "latin-1"


# --- reading delimited text ---------------------------------------------------------------------

def _read_table(source, file: str, sep: str, fields: tuple, lines: Callable[[], Iterable], *,
                int_columns: bool = False) -> pa.Table:
    """A headerless delimited file as an Arrow table (columns f0..fn, no quoting, no blank lines).

    int_columns: every column is an integer (u.data); otherwise every column is a string.
    On any failure the slow path reads `lines()` to name the first bad line.
    """
    names = [f"f{k}" for k in range(len(fields))]
    kind = pa.int64() if int_columns else pa.string()

    def slow(why: str) -> InputError:
        return _first_bad_line(lines(), sep, fields, file) or InputError(file, None, "parse", why)

    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, encoding="utf8", block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: kind for n in names},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as e:
        raise slow(str(e)) from None
    if any(table[n].null_count for n in names):   # a blank line or an empty integer field
        raise slow("empty field")
    return table


def _int_column(table: pa.Table, col: str, file: str, field: str) -> np.ndarray:
    """A string column as int64 under the integer rule and the field's range (names the first bad line)."""
    s = table[col]
    ok = pc.match_substring_regex(s, _DIGITS_ARROW).to_numpy(zero_copy_only=False)
    _fail_at(~ok, file, "integer",
             lambda i: f"{field} must be written in {INTEGER_RULE}, got {s[i].as_py()!r}", field)
    try:
        values = pc.cast(s, pa.int64()).to_numpy()
    except pa.ArrowInvalid:        # more than 64 bits: the slow rule names the line
        texts = s.to_pylist()
        i = next(k for k, v in enumerate(texts) if int_problem(v, field))
        rule, detail = int_problem(texts[i], field)
        raise InputError(file, i + 1, rule, detail, field=field) from None
    _check_ranges(file, [(field, values)])
    return values


def _check_ranges(file: str, columns: list[tuple[str, np.ndarray]]) -> None:
    """Every value within its field's range; names the first line where one is not."""
    masks = []
    for name, values in columns:
        lo, hi = RANGES[name][:2] if name in RANGES else (None, None)
        masks.append(((values < lo) | (values > hi)) if lo is not None else np.zeros(len(values), bool))
    bad = np.logical_or.reduce(masks) if masks else np.zeros(0, bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        for (name, values), mask in zip(columns, masks):
            if mask[i]:
                rule, detail = range_problem(name, int(values[i]))
                raise InputError(file, i + 1, rule, detail, field=name)


def _fail_at(mask: np.ndarray, file: str, rule: str, detail, field: str | None = None):
    """Raise for the first True in mask (row i is line i + 1); detail(i) builds the message."""
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        raise InputError(file, i + 1, rule, detail(i), field=field)


def _scan_ratings_bytes(path: Path) -> bool:
    """True when u.data holds only digits, tabs and line ends, and every line surely fits MAX_LINE_BYTES.

    Vectorised over 16 MiB chunks. The line test is conservative: each aligned block of
    MAX_LINE_BYTES / 2 bytes must hold a line end (a longer line covers a whole block); False sends
    the file to the exact per-line rules.
    """
    block = MAX_LINE_BYTES // 2
    with open(path, "rb") as f:
        while chunk := f.read(_SCAN_BYTES):
            if chunk.translate(None, _RATINGS_BYTES):
                return False
            whole = len(chunk) // block * block
            if whole and not (np.frombuffer(chunk, np.uint8, count=whole).reshape(-1, block) == 10).any(axis=1).all():
                return False
    return True


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
    dup = pd.Series(ids).duplicated().to_numpy()
    _fail_at(dup, file, "unique-id", lambda i: f"{field} {ids[i]} appears more than once", field)


def _text_table(path: Path, sep: str, fields: tuple) -> tuple[pa.Table, str]:
    """(string table, encoding) of a catalogue file."""
    text, encoding = _decode(path)
    table = _read_table(pa.BufferReader(text.encode("utf-8")), path.name, sep, fields, lambda: _text_lines(text))
    return table, encoding


# --- the files ------------------------------------------------------------------------------------

def _trimmed_lines(path: Path, encodings: dict | None) -> list[tuple[int, str]]:
    """Decoded lines of a small file, trailing blank lines dropped."""
    text, encoding = _decode(path)
    if encodings is not None:
        encodings[path.name] = encoding
    lines = list(_text_lines(text))
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
    lines = lambda: _file_lines(path)  # noqa: E731
    if not _scan_ratings_bytes(path):          # a byte that is no digit, tab or line end; or a long line
        err = _first_bad_line(lines(), "\t", RATINGS_FIELDS, f)
        if err:
            raise err
    t = _read_table(path, f, "\t", RATINGS_FIELDS, lines, int_columns=True)
    user, item, rating, ts = (t[f"f{k}"].to_numpy() for k in range(4))
    _check_ranges(f, list(zip(RATINGS_FIELDS, (user, item, rating, ts))))
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
    t, encoding = _text_table(path, "|", (c.ITEM_ID,) + (None,) * (4 + n_genres))
    if encodings is not None:
        encodings[f] = encoding
    item = _int_column(t, "f0", f, c.ITEM_ID)
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


def parse_users(path: Path, occupations: list[str] | None = None, encodings: dict | None = None) -> pd.DataFrame:
    """u.user: id|age|gender M/F|occupation|zip code; occupation from u.occupation when given."""
    f = path.name
    t, encoding = _text_table(path, "|", (c.USER_ID, c.AGE, None, None, None))
    if encodings is not None:
        encodings[f] = encoding
    user = _int_column(t, "f0", f, c.USER_ID)
    _unique_ids(user, f, c.USER_ID)
    age = _int_column(t, "f1", f, c.AGE)
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
