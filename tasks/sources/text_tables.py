"""Reading the MovieLens delimited text files into Arrow tables, checked vectorised (pyarrow.csv + numpy):
only after a check fails is the first offending line looked for, so a valid 25M-line u.data never meets a
per-line Python loop.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tasks.core.errors import InputError
from tasks.sources.input_rules import (
    DATE_PATTERN, DIGITS_ARROW, INTEGER_RULE, MAX_LINE_BYTES, MONTHS, RANGES, RATINGS_BYTES, SCAN_BYTES, decode,
    first_bad_line, int_problem, range_problem, text_lines,
)


# --- reading delimited text ---------------------------------------------------------------------

def read_table(source, file: str, sep: str, fields: tuple, lines: Callable[[], Iterable], *,
                int_columns: bool = False) -> pa.Table:
    """A headerless delimited file as an Arrow table (columns f0..fn, no quoting, no blank lines).

    int_columns: every column is an integer (u.data); otherwise every column is a string.
    On any failure the slow path reads `lines()` to name the first bad line.
    """
    names = [f"f{k}" for k in range(len(fields))]
    kind = pa.int64() if int_columns else pa.string()

    def slow(why: str) -> InputError:
        return first_bad_line(lines(), sep, fields, file) or InputError(file, None, "parse", why)

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


def int_column(table: pa.Table, col: str, file: str, field: str) -> np.ndarray:
    """A string column as int64 under the integer rule and the field's range (names the first bad line)."""
    s = table[col]
    ok = pc.match_substring_regex(s, DIGITS_ARROW).to_numpy(zero_copy_only=False)
    fail_at(~ok, file, "integer",
             lambda i: f"{field} must be written in {INTEGER_RULE}, got {s[i].as_py()!r}", field)
    try:
        values = pc.cast(s, pa.int64()).to_numpy()
    except pa.ArrowInvalid:        # more than 64 bits: the slow rule names the line
        texts = s.to_pylist()
        i = next(k for k, v in enumerate(texts) if int_problem(v, field))
        rule, detail = int_problem(texts[i], field)
        raise InputError(file, i + 1, rule, detail, field=field) from None
    check_ranges(file, [(field, values)])
    return values


def check_ranges(file: str, columns: list[tuple[str, np.ndarray]]) -> None:
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


def fail_at(mask: np.ndarray, file: str, rule: str, detail, field: str | None = None):
    """Raise for the first True in mask (row i is line i + 1); detail(i) builds the message."""
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        raise InputError(file, i + 1, rule, detail(i), field=field)


def scan_ratings_bytes(path: Path) -> bool:
    """True when u.data holds only digits, tabs and line ends, and every line surely fits MAX_LINE_BYTES.

    Vectorised over 16 MiB chunks. The line test is conservative: each aligned block of
    MAX_LINE_BYTES / 2 bytes must hold a line end (a longer line covers a whole block); False sends
    the file to the exact per-line rules.
    """
    block = MAX_LINE_BYTES // 2
    with open(path, "rb") as f:
        while chunk := f.read(SCAN_BYTES):
            if chunk.translate(None, RATINGS_BYTES):
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
    m = DATE_PATTERN.fullmatch(text)
    month = MONTHS.get(m.group(2).title()) if m else None
    if month is None:
        return False
    try:
        return datetime.date(int(m.group(3)), month, int(m.group(1)))
    except ValueError:
        return False


def parse_dates(values: pa.ChunkedArray, file: str, field: str) -> pd.Series:
    """dd-Mon-yyyy dates; empty means unknown (null); anything else is an error (catalogue-sized input)."""
    raw = [v.strip() for v in values.to_pylist()]
    dates = [_to_date(v) for v in raw]
    fail_at(np.array([d is False for d in dates], dtype=bool), file, "date-format",
             lambda i: f"{field} must look like 01-Jan-1995 or be empty, got {raw[i]!r}", field)
    return pd.Series(dates, dtype=object)


def unique_ids(ids: np.ndarray, file: str, field: str) -> None:
    dup = pd.Series(ids).duplicated().to_numpy()
    fail_at(dup, file, "unique-id", lambda i: f"{field} {ids[i]} appears more than once", field)


def text_table(path: Path, sep: str, fields: tuple) -> tuple[pa.Table, str]:
    """(string table, encoding) of a catalogue file."""
    text, encoding = decode(path)
    table = read_table(pa.BufferReader(text.encode("utf-8")), path.name, sep, fields, lambda: text_lines(text))
    return table, encoding


