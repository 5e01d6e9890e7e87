"""Parsing and every validation rule of tasks.sources.movielens on tiny hand-written files."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.core import contract as c
from tasks.sources import movielens as ml
from tasks.core.errors import InputError

FLAGS_COMEDY = "|".join("1" if g == "Comedy" else "0" for g in c.GENRE_NAMES)
FLAGS_DRAMA_ROMANCE = "|".join("1" if g in ("Drama", "Romance") else "0" for g in c.GENRE_NAMES)
GOOD = {
    "u.data": "1\t1\t5\t881250949\n2\t1\t3\t891717742\n1\t2\t1\t878887116\n",
    "u.item": (f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{FLAGS_COMEDY}\n"
               f"2|Misérables, Les (1995)|||http://x|{FLAGS_DRAMA_ROMANCE}\n"),
    "u.user": "1|24|M|technician|85711\n2|53|F|other|T8H1N\n",
    "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(c.GENRE_NAMES)) + "\n",
    "u.occupation": "technician\nother\n",
}


def write(folder, **changes):
    """A MovieLens folder from GOOD with some files replaced (latin-1, as GroupLens ships them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {**GOOD, **{k.replace("_", "."): v for k, v in changes.items()}}.items():
        if text is not None:
            (folder / name).write_bytes(text.encode("latin-1"))
    return folder


def assert_error(folder, file, line, rule):
    with pytest.raises(InputError) as e:
        ml.read_sources(folder)
    err = e.value
    assert (err.file, err.line, err.rule) == (file, line, rule), str(err)
    assert file in str(err) and f"'{rule}'" in str(err)
    return err


def test_good_folder_parses_with_contract_types(tmp_path):
    t = ml.read_sources(write(tmp_path / "ml"))
    assert list(t.ratings.columns) == list(c.RATINGS_COLUMNS)
    assert list(t.movies.columns) == list(c.MOVIES_COLUMNS)
    assert list(t.users.columns) == list(c.USERS_COLUMNS)
    assert list(t.genres.columns) == list(c.GENRES_COLUMNS)
    assert t.ratings[c.USER_ID].dtype == np.int32 and t.ratings[c.RATING].dtype == np.int8
    assert str(t.ratings[c.RATED_AT].iloc[0]) == "1997-12-04 15:55:49"
    m = t.movies.set_index(c.ITEM_ID)
    assert m.loc[2, c.TITLE] == "Misérables, Les (1995)"          # latin-1 decoded
    assert str(m.loc[1, c.RELEASE_DATE]) == "1995-01-01"
    assert m.loc[2, c.RELEASE_DATE] is None                        # empty date kept as null
    assert m.loc[2, c.GENRES_LIST] == ["Drama", "Romance"]
    assert m.loc[2, c.genre_column("Romance")] and not m.loc[2, c.genre_column("Comedy")]
    assert t.users.set_index(c.USER_ID).loc[2, c.ZIP_CODE] == "T8H1N"
    assert len(t.genres) == 19 and t.genres[c.GENRE_COLUMN].tolist() == list(c.GENRE_COLUMNS)
    for name, df in t.as_dict().items():
        assert ml.to_arrow(name, df).schema == ml.SCHEMAS[name]


@pytest.mark.parametrize("data, line, rule", [
    ("1\t1\t5\t881250949\n2\t1\t7\t891717742\n", 2, "rating-range"),
    ("1\t1\t0\t881250949\n", 1, "rating-range"),
    ("1\t1\t5\t881250949\n1\t2\t4\n", 2, "column-count"),
    ("1\t1\t5\t881250949\n\n2\t1\t3\t891717742\n", 2, "column-count"),
    ("1\t1\t5\t881250949\n2\t1\t3.5\t891717742\n", 2, "integer"),
    ("1\t1\t5\t881250949\n2\tx\t3\t891717742\n", 2, "integer"),
    ("1\t1\t5\t881250949\n2\t1\t3\t891717742\n1\t1\t4\t891717743\n", 3, "unique-pair"),
    ("1\t1\t5\t881250949\n0\t1\t3\t891717742\n", 2, "positive-id"),
    ("1\t1\t5\t-5\n", 1, "integer"),
    ("1\t1\t5\t4102444800\n", 1, "timestamp"),            # 2100-01-01: past the last allowed second
    ("1\t1\t5\t99999999999999999999\n", 1, "timestamp"),  # beyond 64 bits
    ("1\t1\t5\t881250949\n0x10\t1\t3\t891717742\n", 2, "integer"),
    ("1\t1\t5\t881250949\n2\t1\t3\t 891717742\n", 2, "integer"),
    ("1\t1\t5\t881250949\n2147483648\t1\t3\t891717742\n", 2, "id-range"),
    ("1\t1\t5\t881250949\n3\t1\t3\t891717742\n", 2, "known-user"),
    ("1\t1\t5\t881250949\n1\t9\t3\t891717742\n", 2, "known-item"),
])
def test_u_data_rules(tmp_path, data, line, rule):
    assert_error(write(tmp_path / "ml", u_data=data), "u.data", line, rule)


def test_duplicate_pair_names_first_occurrence(tmp_path):
    data = "1\t1\t5\t881250949\n2\t1\t3\t891717742\n1\t1\t4\t891717743\n"
    err = assert_error(write(tmp_path / "ml", u_data=data), "u.data", 3, "unique-pair")
    assert "first on line 1" in str(err)


ITEM1 = f"1|Toy Story (1995)|01-Jan-1995||http://x|{FLAGS_COMEDY}\n"


@pytest.mark.parametrize("item2, rule", [
    (f"2|Heat (1995)|1995-12-15||http://x|{FLAGS_COMEDY}\n", "date-format"),
    (f"2|Heat (1995)|01-Jan-1995|32-Jan-1995|http://x|{FLAGS_COMEDY}\n", "date-format"),
    (f"2|Heat (1995)|01-Jan-1995||http://x|{FLAGS_COMEDY}|0\n", "column-count"),
    (f"2|Heat (1995)|01-Jan-1995||http://x|{FLAGS_COMEDY[:-2]}\n", "column-count"),
    (f"2|Heat (1995)|01-Jan-1995||http://x|{FLAGS_COMEDY[:-1]}2\n", "genre-flag"),
    (f"x|Heat (1995)|01-Jan-1995||http://x|{FLAGS_COMEDY}\n", "integer"),
    (f"1|Heat (1995)|01-Jan-1995||http://x|{FLAGS_COMEDY}\n", "unique-id"),
    (f"2||01-Jan-1995||http://x|{FLAGS_COMEDY}\n", "title"),
])
def test_u_item_rules(tmp_path, item2, rule):
    assert_error(write(tmp_path / "ml", u_item=ITEM1 + item2), "u.item", 2, rule)


@pytest.mark.parametrize("user2, rule", [
    ("2|53|X|other|94043\n", "gender"),
    ("2|abc|F|other|94043\n", "integer"),
    ("2|200|F|other|94043\n", "age-range"),
    ("2|53|F|astronaut|94043\n", "occupation"),
    ("1|53|F|other|94043\n", "unique-id"),
    ("2|53|F|other|\n", "zip-code"),
    ("2|53|F|other\n", "column-count"),
])
def test_u_user_rules(tmp_path, user2, rule):
    assert_error(write(tmp_path / "ml", u_user="1|24|M|technician|85711\n" + user2), "u.user", 2, rule)


def test_occupation_file_is_optional(tmp_path):
    folder = write(tmp_path / "ml", u_user="1|24|M|technician|85711\n2|53|F|astronaut|94043\n")
    (folder / "u.occupation").unlink()
    assert len(ml.read_sources(folder).users) == 2


@pytest.mark.parametrize("genre, line, rule", [
    (GOOD["u.genre"].replace("Action|1", "Actionn|1"), 2, "genre-names"),
    (GOOD["u.genre"].replace("Action|1", "Action|7"), 2, "genre-id"),
    (GOOD["u.genre"].replace("Action|1", "Action"), 2, "column-count"),
    ("".join(f"{g}|{i}\n" for i, g in enumerate(c.GENRE_NAMES[:-1])), 19, "genre-names"),
    (GOOD["u.genre"].rstrip("\n") + "\nNoir|19\n", 20, "genre-names"),
])
def test_u_genre_rules(tmp_path, genre, line, rule):
    assert_error(write(tmp_path / "ml", u_genre=genre), "u.genre", line, rule)


def test_missing_file_is_named(tmp_path):
    folder = write(tmp_path / "ml", u_user=None)
    with pytest.raises(InputError, match="u.user") as e:
        ml.read_sources(folder)
    assert e.value.rule == "files-present"


def test_content_hash_follows_content(tmp_path):
    a = write(tmp_path / "a")
    b = write(tmp_path / "b")
    assert ml.content_hash(a) == ml.content_hash(b)
    (b / "u.data").write_text(GOOD["u.data"].replace("\t5\t", "\t4\t"))
    assert ml.content_hash(a) != ml.content_hash(b)


def test_real_files_parse(real_ml100k):
    t = ml.read_sources(real_ml100k)
    assert (len(t.ratings), len(t.users), len(t.movies), len(t.genres)) == (100_000, 943, 1682, 19)
    m = t.movies.set_index(c.ITEM_ID)
    assert m.loc[1, c.TITLE] == "Toy Story (1995)"
    assert m.loc[543, c.TITLE] == "Misérables, Les (1995)"
    assert m.loc[267, c.RELEASE_DATE] is None and m.loc[267, c.TITLE] == "unknown"
    assert t.ratings[c.RATING].between(1, 5).all()
