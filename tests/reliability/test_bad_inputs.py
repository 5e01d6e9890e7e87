"""Bad-input corpus: every case fails with an error naming file, line/field and rule, and changes nothing.

A good synthetic data set is ingested and published once; each case then feeds a broken copy (or a
broken zip) to the real ingest and compares the lake files (sha256, CURRENT included), the warehouse
file (sha256) and what a reader of the warehouse sees (publication ids, row counts, every published
row) with the state before. Most cases call the plain ingest functions; two go through the Prefect flow.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tasks.sources import acquire
from tasks.core.errors import InputError
from tests.reliability import helpers

DATA, ITEM, USER, GENRE = "u.data", "u.item", "u.user", "u.genre"


@dataclass(frozen=True)
class Case:
    """One broken input: how to break a good folder, and the error it must produce."""

    name: str
    breaks: Callable[[Path], None]
    file: str
    rule: str
    line: int | None = None
    field: str | None = None


def _lines(folder: Path, name: str) -> list[bytes]:
    return (folder / name).read_bytes().split(b"\n")


def _write(folder: Path, name: str, lines: list[bytes]) -> None:
    (folder / name).write_bytes(b"\n".join(lines))


def edit_field(name: str, line: int, col: int, value: bytes, sep: bytes | None = None):
    """Set field `col` (0-based) of 1-based `line` of a file to `value`."""
    def breaks(folder: Path) -> None:
        s = sep or (b"\t" if name == DATA else b"|")
        lines = _lines(folder, name)
        fields = lines[line - 1].split(s)
        fields[col] = value
        lines[line - 1] = s.join(fields)
        _write(folder, name, lines)
    return breaks


def edit_line(name: str, line: int, fn: Callable[[bytes], bytes]):
    def breaks(folder: Path) -> None:
        lines = _lines(folder, name)
        lines[line - 1] = fn(lines[line - 1])
        _write(folder, name, lines)
    return breaks


def replace_all(name: str, old: bytes, new: bytes):
    def breaks(folder: Path) -> None:
        (folder / name).write_bytes((folder / name).read_bytes().replace(old, new))
    return breaks


def empty(name: str):
    def breaks(folder: Path) -> None:
        (folder / name).write_bytes(b"")
    return breaks


def truncate_last_line(name: str, keep_fields: int):
    """Cut the file in the middle of its last line, after `keep_fields` fields (a half-written file)."""
    def breaks(folder: Path) -> None:
        s = b"\t" if name == DATA else b"|"
        lines = [ln for ln in _lines(folder, name) if ln]
        lines[-1] = s.join(lines[-1].split(s)[:keep_fields])
        _write(folder, name, lines)
    return breaks


def duplicate_pair(first: int, again: int):
    """Line `again` of u.data rates the same (user, item) as line `first`."""
    def breaks(folder: Path) -> None:
        lines = _lines(folder, DATA)
        u, i, _, ts = lines[first - 1].split(b"\t")
        lines[again - 1] = b"\t".join([u, i, b"5" if lines[first - 1].split(b"\t")[2] != b"5" else b"4", ts])
        _write(folder, DATA, lines)
    return breaks


def utf16(name: str):
    def breaks(folder: Path) -> None:
        (folder / name).write_bytes((folder / name).read_text(encoding="latin-1").encode("utf-16"))
    return breaks


def remove(name: str):
    def breaks(folder: Path) -> None:
        (folder / name).unlink()
    return breaks


CASES = [
    # truncated and empty files
    Case("data-empty", empty(DATA), DATA, "not-empty"),
    Case("item-empty", empty(ITEM), ITEM, "not-empty"),
    Case("user-empty", empty(USER), USER, "not-empty"),
    Case("genre-empty", empty(GENRE), GENRE, "not-empty"),
    Case("data-truncated-mid-line", truncate_last_line(DATA, 2), DATA, "column-count", -1),
    Case("item-truncated-mid-line", truncate_last_line(ITEM, 3), ITEM, "column-count", -1),
    Case("data-blank-line", edit_line(DATA, 12, lambda ln: b""), DATA, "column-count", 12),
    Case("item-missing", remove(ITEM), "<folder>", "files-present"),
    # wrong delimiter
    Case("data-commas", replace_all(DATA, b"\t", b","), DATA, "column-count", 1),
    Case("user-tabs", replace_all(USER, b"|", b"\t"), USER, "column-count", 1),
    Case("item-semicolons", replace_all(ITEM, b"|", b";"), ITEM, "column-count", 1),
    # wrong column count
    Case("data-extra-field", edit_line(DATA, 7, lambda ln: ln + b"\t1"), DATA, "column-count", 7),
    Case("user-missing-field", edit_line(USER, 4, lambda ln: ln.rsplit(b"|", 1)[0]), USER, "column-count", 4),
    Case("item-extra-flag", edit_line(ITEM, 9, lambda ln: ln + b"|0"), ITEM, "column-count", 9),
    # non-numeric ids and values
    Case("data-user-id-word", edit_field(DATA, 5, 0, b"abc"), DATA, "integer", 5),
    Case("data-item-id-float", edit_field(DATA, 6, 1, b"12.5"), DATA, "integer", 6),
    Case("item-id-word", edit_field(ITEM, 2, 0, b"x12"), ITEM, "integer", 2, "item_id"),
    Case("user-id-word", edit_field(USER, 3, 0, b"7a"), USER, "integer", 3, "user_id"),
    Case("user-age-word", edit_field(USER, 8, 1, b"old"), USER, "integer", 8, "age"),
    Case("data-negative-user", edit_field(DATA, 10, 0, b"-3"), DATA, "integer", 10, "user_id"),
    # ratings outside 1..5 (and not integers)
    Case("rating-zero", edit_field(DATA, 8, 2, b"0"), DATA, "rating-range", 8, "rating"),
    Case("rating-six", edit_field(DATA, 9, 2, b"6"), DATA, "rating-range", 9, "rating"),
    Case("rating-half", edit_field(DATA, 11, 2, b"3.5"), DATA, "integer", 11),
    Case("timestamp-negative", edit_field(DATA, 13, 3, b"-5"), DATA, "integer", 13, "rated_at"),
    # duplicate (user, item) pairs and duplicate catalogue ids
    Case("duplicate-pair", duplicate_pair(3, 20), DATA, "unique-pair", 20),
    Case("duplicate-item-id", edit_field(ITEM, 6, 0, b"1"), ITEM, "unique-id", 6, "item_id"),
    Case("duplicate-user-id", edit_field(USER, 5, 0, b"1"), USER, "unique-id", 5, "user_id"),
    # ratings for unknown items or users
    Case("unknown-item", edit_field(DATA, 4, 1, b"99999"), DATA, "known-item", 4, "item_id"),
    Case("unknown-user", edit_field(DATA, 6, 0, b"99999"), DATA, "known-user", 6, "user_id"),
    # undecodable bytes (u.item falls back to latin-1, where every byte decodes; elsewhere they break a rule)
    Case("data-binary-id", edit_field(DATA, 2, 0, b"\xff\xfe"), DATA, "integer", 2, "user_id"),
    Case("data-utf16", utf16(DATA), DATA, "text", 1),
    Case("user-gender-byte", edit_field(USER, 7, 2, b"\xe9"), USER, "gender", 7, "gender"),
    Case("genre-utf16", utf16(GENRE), GENRE, "text", 1),
    # dates in the wrong format
    Case("release-iso-date", edit_field(ITEM, 3, 2, b"1995-01-01"), ITEM, "date-format", 3, "release_date"),
    Case("release-day-32", edit_field(ITEM, 5, 2, b"32-Jan-1995"), ITEM, "date-format", 5, "release_date"),
    Case("video-bad-month", edit_field(ITEM, 7, 3, b"01-Foo-1995"), ITEM, "date-format", 7, "video_release_date"),
    # other catalogue rules
    Case("genre-flag-two", edit_field(ITEM, 4, 7, b"2"), ITEM, "genre-flag", 4),
    Case("empty-title", edit_field(ITEM, 10, 1, b" "), ITEM, "title", 10, "title"),
]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A good synthetic source, ingested and published into a home; the state to compare against."""
    root = tmp_path_factory.mktemp("bad-inputs")
    source = helpers.make_source(root / "good", seed=11)
    paths = helpers.build_published_home(root / "home", source)
    return source, paths, helpers.state(paths)


def expect_refused(paths, before, run, case_file, rule, line=None, field=None, n_lines=None) -> InputError:
    """Run the ingest; assert the InputError names file/line/field/rule and that nothing changed."""
    with pytest.raises(InputError) as info:
        run()
    err = info.value
    msg = str(err)
    assert err.rule == rule, msg
    assert f"rule '{rule}'" in msg
    if case_file != "<folder>":
        assert err.file == case_file and msg.startswith(case_file), msg
    if line is not None:
        want = n_lines if line == -1 else line
        assert err.line == want and f"line {want}" in msg, msg
    if field is not None:
        assert err.field == field and f"field '{field}'" in msg, msg
    assert helpers.state(paths) == before, "a refused input changed the lake, warehouse or publication"
    return err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_file_is_refused_and_changes_nothing(case, good, tmp_path):
    source, paths, before = good
    bad = tmp_path / "bad"
    shutil.copytree(source, bad)
    case.breaks(bad)
    n_lines = len([ln for ln in _lines(bad, case.file) if ln]) if case.line == -1 else None
    expect_refused(paths, before, lambda: helpers.ingest(paths, bad), case.file, case.rule, case.line,
                   case.field, n_lines)


# --- archives -----------------------------------------------------------------------------------

def make_zip(path: Path, source: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
    """A zip of the good files under ml-100k/, plus extra (name or ZipInfo, bytes) members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(source.iterdir()):
            zf.write(p, f"ml-100k/{p.name}")
        for name, data in extra:
            zf.writestr(name, data)
    return path


def symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)  # S_IFLNK: a symbolic link
    return info, target.encode()


def set_declared_size(zip_path: Path, member: str, size: int) -> None:
    """Rewrite a member's uncompressed size in the central directory (a lying, bomb-like header)."""
    data = bytearray(zip_path.read_bytes())
    at = data.find(b"PK\x01\x02")  # first central directory entry
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_len].decode() == member:
            struct.pack_into("<I", data, at + 24, size)
            zip_path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{member} not in {zip_path}")


ESCAPES = [
    ("dot-dot", "ml-100k/../../escaped.txt", "zip-path-traversal"),
    ("absolute", "/tmp/lensflow-escaped.txt", "zip-absolute-path"),
    ("backslash", "..\\escaped.txt", "zip-absolute-path"),
    ("symlink", None, "zip-symlink"),
]


@pytest.mark.parametrize("name,member,rule", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_zip_member_escaping_the_target_is_refused(name, member, rule, good, tmp_path):
    source, paths, before = good
    if member is None:
        extra = [symlink_member("ml-100k/u.link", "/etc/passwd")]
        member = "ml-100k/u.link"
    else:
        extra = [(member, b"escaped")]
    archive = make_zip(tmp_path / f"{name}.zip", source, extra)
    extracted_before = sorted((paths.raw / "extracted").glob("*")) if (paths.raw / "extracted").is_dir() else []
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, archive), archive.name, rule, field=member)
    assert err.field == member
    # nothing landed anywhere: no escaped file, no extraction folder (not even a temporary one)
    assert not (paths.raw / "escaped.txt").exists() and not (paths.home / "escaped.txt").exists()
    assert not Path("/tmp/lensflow-escaped.txt").exists()
    now = sorted((paths.raw / "extracted").glob("*")) if (paths.raw / "extracted").is_dir() else []
    assert [p for p in now if p not in extracted_before] == []
    assert not list((paths.raw / "extracted").glob(".*")) if (paths.raw / "extracted").is_dir() else True


def test_zip_member_declaring_more_than_the_ceiling_is_refused_before_writing(good, tmp_path):
    """A member whose header declares 2 GiB (bomb-like) is refused by the default 1 GiB ceiling."""
    source, paths, before = good
    archive = make_zip(tmp_path / "bomb.zip", source, [("ml-100k/huge.bin", b"\0" * 4096)])
    set_declared_size(archive, "ml-100k/huge.bin", 2 << 30)
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, archive), archive.name,
                         "zip-member-size", field="ml-100k/huge.bin")
    assert str(2 << 30) in str(err)


def test_highly_compressed_member_beyond_ceiling_is_refused(good, tmp_path):
    """8 MiB of zeros (about 8 KiB compressed, ratio ~1000:1) against a 1 MiB ceiling."""
    source, paths, before = good
    archive = make_zip(tmp_path / "zeros.zip", source, [("ml-100k/zeros.bin", b"\0" * (8 << 20))])
    assert archive.stat().st_size < 64 << 10
    target = tmp_path / "out"
    with pytest.raises(InputError) as info:
        acquire.safe_extract(archive, target, max_member_bytes=1 << 20)
    assert info.value.rule == "zip-member-size" and info.value.field == "ml-100k/zeros.bin"
    assert not target.exists() and list(tmp_path.glob(".out.tmp-*")) == []
    with pytest.raises(InputError) as info:
        acquire.safe_extract(archive, target, max_total_bytes=4 << 20)
    assert info.value.rule == "zip-total-size"
    assert helpers.state(paths) == before


def test_member_inflating_past_its_declared_size_is_refused(good, tmp_path):
    """The header says 1000 bytes, the data inflates to 8 MiB: extraction stops, nothing is kept."""
    source, paths, before = good
    archive = make_zip(tmp_path / "liar.zip", source, [("ml-100k/liar.bin", b"\0" * (8 << 20))])
    set_declared_size(archive, "ml-100k/liar.bin", 1000)
    err = expect_refused(paths, before, lambda: helpers.ingest(paths, archive), archive.name, "zip-format")
    assert "liar.bin" in str(err)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_broken_archive_is_refused(damage, good, tmp_path):
    source, paths, before = good
    archive = make_zip(tmp_path / "broken.zip", source)
    data = archive.read_bytes()
    archive.write_bytes(b"not a zip at all" * 64 if damage == "garbage" else data[: len(data) // 2])
    expect_refused(paths, before, lambda: helpers.ingest(paths, archive), archive.name, "source-kind")


def test_download_with_wrong_checksum_is_refused_and_not_cached(good, tmp_path):
    """A 'download' (file:// URL, no network) whose SHA-1 differs is refused and never cached."""
    source, paths, before = good
    archive = make_zip(tmp_path / "ml-100k.zip", source)
    url = archive.as_uri()
    with pytest.raises(acquire.ChecksumMismatch) as info:
        acquire.resolve_source(None, paths, url=url, sha1="0" * 40, progress=False, retries=0)
    assert info.value.rule == "sha1" and info.value.file == "ml-100k.zip"
    assert "expected " + "0" * 40 in str(info.value)
    assert not (paths.raw / "ml-100k.zip").exists()
    assert list(paths.raw.glob(".ml-100k.zip.part-*")) == []
    assert helpers.state(paths) == before
    # a damaged cached copy is dropped and fetched again when the checksum is right
    (paths.raw / "ml-100k.zip").write_bytes(b"damaged")
    folder = acquire.resolve_source(None, paths, url=url, sha1=acquire.sha1_of(archive), progress=False,
                                    retries=0)
    assert acquire.sha1_of(paths.raw / "ml-100k.zip") == acquire.sha1_of(archive)
    assert (folder / DATA).read_bytes() == (source / DATA).read_bytes()
    assert helpers.state(paths) == before


# --- through the Prefect flow ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rating-six", "zip-dot-dot"])
def test_ingest_flow_refuses_bad_input_and_changes_nothing(kind, good, tmp_path, prefect_api):
    from flows.ingest import ingest as ingest_flow

    source, paths, before = good
    if kind == "rating-six":
        bad = tmp_path / "bad"
        shutil.copytree(source, bad)
        edit_field(DATA, 9, 2, b"6")(bad)
        want = (DATA, "rating-range", 9)
    else:
        bad = make_zip(tmp_path / "evil.zip", source, [("ml-100k/../../evil.txt", b"x")])
        want = ("evil.zip", "zip-path-traversal", None)
    expect_refused(paths, before, lambda: ingest_flow(source=str(bad), home=str(paths.home)), *want)


def test_good_input_after_the_corpus_still_ingests(good, tmp_path):
    """The corpus left the home usable: a new good data set ingests and the publication stays served."""
    source, paths, before = good
    fresh = helpers.copy_home(paths, tmp_path / "home")
    other = helpers.make_source(tmp_path / "other", seed=12)
    untouched = helpers.state(fresh)
    data_hash = helpers.ingest(fresh, other)
    assert helpers.check_consistent(fresh)["warehouse_data_hash"] == data_hash
    changed = helpers.state(fresh)  # the comparison the corpus relies on does see a real change
    assert changed["lake"] != untouched["lake"] and changed["warehouse_sha256"] != untouched["warehouse_sha256"]
    assert helpers.state(paths) == before
