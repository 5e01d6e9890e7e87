"""The input rules of the MovieLens files (docs/reliability.md, "Input rules"): the file names, the integer
and range rules of one value, the checks of one line, and the checks of whole files (present, bounded in
size and line length, decoded as strict UTF-8 or latin-1). Every failure is an `InputError` naming the
file, the 1-based line, the field where there is one, and the rule.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from tasks.core import contract as c
from tasks.core.errors import InputError

RATINGS_FILE, ITEMS_FILE, USERS_FILE, GENRES_FILE, OCCUPATIONS_FILE = (
    "u.data", "u.item", "u.user", "u.genre", "u.occupation")
REQUIRED_FILES = (RATINGS_FILE, ITEMS_FILE, USERS_FILE, GENRES_FILE)
DATE_FORMAT = "dd-Mon-yyyy" # 01-Jan-1995
DATE_PATTERN = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
MONTHS = {m: k for k, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}

# --- input rules (docs/reliability.md, "Input rules") -----------------------------------------------
# One integer rule for every integer field of every file: ASCII decimal digits and nothing else.
INTEGER_RULE = "decimal digits 0-9 only (no sign, spaces, '0x', '.', '_' or exponent)"
_DIGITS = re.compile(r"[0-9]+")               # the rule for one value (fullmatch)
DIGITS_ARROW = r"^[0-9]+$"                    # the same rule for pyarrow.compute
RATINGS_BYTES = b"0123456789\t\n\r"          # u.data is integers only: no other byte may appear
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
SCAN_BYTES = 1 << 24

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


def first_bad_line(lines: Iterable[tuple[int, str | None]], sep: str, fields: tuple, file: str):
    """Slow path after a vectorised check failed: the InputError of the first bad line, or None."""
    for no, line in lines:
        err = _line_problem(no, line, sep, fields, file)
        if err:
            return err
    return None


def file_lines(path: Path) -> Iterator[tuple[int, str | None]]:
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


def text_lines(text: str) -> Iterator[tuple[int, str | None]]:
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
    if name == RATINGS_FILE and head.translate(None, RATINGS_BYTES):
        err = first_bad_line(file_lines(path), "\t", RATINGS_FIELDS, name)
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


def decode(path: Path) -> tuple[str, str]:
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


