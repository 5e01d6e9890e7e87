"""Synthetic MovieLens data in the exact ML-100k file formats, with latent structure a model can learn.

Ratings come from low-rank user/item factors plus biases plus noise; item popularity is Zipf-like;
genres are drawn from the item factors (so they carry signal); each user rates inside their own
activity window. Users are generated in fixed-size chunks, so memory stays flat from a few hundred
ratings up to ML-25M size, and the output depends only on the arguments and the seed.

CLI: `python -m tasks.sources.synthetic --out DIR --users N --items N --ratings N [--seed S]`.
"""

from __future__ import annotations

import argparse
import calendar
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tasks.core import contract as c

N_FACTORS = 8
USERS_PER_CHUNK = 20_000
MAX_DENSITY = 0.5           # at most half of all (user, item) pairs rated, so sampling stays cheap
EXACT_TASTE_CELLS = 2 ** 25  # taste > 0: exact sampling while a chunk's users x items affinity fits (256 MiB)
TASTE_OVERSAMPLE = 4        # taste > 0 beyond that: candidates drawn per rating before resampling by taste
START_TS = 874_724_710      # 1997-09-20, the first ML-100k rating
END_TS = 893_286_638        # 1998-04-22, the last ML-100k rating
OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)
# Title words; some carry latin-1 accents so readers must decode u.item as latin-1.
_WORDS_A = ("Dark", "Silent", "Last", "Red", "Lost", "Little", "Great", "Café", "Señor", "Noël",
            "Midnight", "Broken", "Secret", "Wild", "Golden", "Über")
_WORDS_B = ("River", "City", "Night", "Heart", "Garden", "Misérables", "Dream", "Road", "Summer",
            "Kingdom", "Stranger", "Amélie", "Promise", "Island", "Déjà Vu", "Storm")
_MONTHS = tuple(calendar.month_abbr[1:])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _user_counts(rng: np.random.Generator, n_users: int, n_items: int, n_ratings: int) -> np.ndarray:
    """Ratings per user: skewed (lognormal), at least one each where possible, capped, summing to n_ratings."""
    floor = min(20, n_ratings // n_users)
    cap = max(floor, int(n_items * 0.9))
    w = rng.lognormal(0.0, 1.0, n_users)
    counts = np.full(n_users, floor, dtype=np.int64)
    left = n_ratings - counts.sum()
    while left > 0:                       # water-filling: share out what is left, never above the cap
        room = cap - counts
        open_ = room > 0
        share = np.floor(w * open_ / (w * open_).sum() * left).astype(np.int64)
        share = np.minimum(share, room)
        if share.sum() == 0:              # remainders: one each to the heaviest users with room
            order = np.argsort(-w * open_, kind="stable")[: int(left)]
            share = np.zeros_like(counts)
            share[order] = 1
            share = np.minimum(share, room)
        counts += share
        left = n_ratings - counts.sum()
    return counts


def _sample_items(rng, counts: np.ndarray, popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per user drawn by popularity: oversample, drop repeats, top up the short users."""
    n_items = popularity.size
    cdf = np.cumsum(popularity)
    cdf /= cdf[-1]
    items = np.empty(0, dtype=np.int64)
    owners = np.empty(0, dtype=np.int64)
    need = counts.copy()
    for _ in range(30):
        if need.sum() == 0:
            break
        draw_u = np.repeat(np.arange(counts.size), np.ceil(need * 1.3 + 2).astype(np.int64))
        draw_i = np.searchsorted(cdf, rng.random(draw_u.size), side="right").clip(0, n_items - 1)
        u_all = np.concatenate([owners, draw_u])
        i_all = np.concatenate([items, draw_i])
        _, first = np.unique(u_all * n_items + i_all, return_index=True)
        first.sort()                                   # keep earlier draws first: deterministic
        u_all, i_all = u_all[first], i_all[first]
        keep = _rank_within(u_all) < counts[u_all]
        owners, items = u_all[keep], i_all[keep]
        need = counts - np.bincount(owners, minlength=counts.size)
    for u in np.flatnonzero(need):                     # dense users: exact draw without replacement
        have = items[owners == u]
        free = np.setdiff1d(np.arange(n_items), have)
        p = popularity[free] / popularity[free].sum()
        extra = rng.choice(free, size=int(need[u]), replace=False, p=p)
        owners = np.concatenate([owners, np.full(extra.size, u)])
        items = np.concatenate([items, extra])
    order = np.argsort(owners, kind="stable")
    return owners[order], items[order]


def _sample_by_taste(rng, counts, popularity, user_f, item_f, taste: float) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per user drawn without replacement, p ∝ popularity·exp(taste·<p_u, q_i>/sd)."""
    affinity = user_f @ item_f.T
    logits = np.log(popularity)[None, :] + taste * affinity / (affinity.std() + 1e-9)
    owners, items = [], []
    for u, n in enumerate(counts):
        p = np.exp(logits[u] - logits[u].max())
        items.append(rng.choice(popularity.size, size=int(n), replace=False, p=p / p.sum()))
        owners.append(np.full(int(n), u))
    return np.concatenate(owners).astype(np.int64), np.concatenate(items).astype(np.int64)


def _sample_by_taste_resampled(rng, counts, popularity, user_f, item_f, taste: float,
                               sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Large catalogues: the taste draw of `_sample_by_taste`, approximated without a users x items matrix.

    Each user draws TASTE_OVERSAMPLE x their count of candidates by popularity, repeats dropped, and keeps
    their count of them by Gumbel top-k on taste·<p_u, q_i>/sd (sampling without replacement ∝ exp of it);
    a user left short (heavy raters of a skewed catalogue) takes the rest by the exact draw.
    """
    n_items = popularity.size
    cdf = np.cumsum(popularity)
    cdf /= cdf[-1]
    draw_u = np.repeat(np.arange(counts.size), np.ceil(counts * TASTE_OVERSAMPLE + 8).astype(np.int64))
    draw_i = np.searchsorted(cdf, rng.random(draw_u.size), side="right").clip(0, n_items - 1)
    _, first = np.unique(draw_u * n_items + draw_i, return_index=True)
    first.sort()
    u, i = draw_u[first], draw_i[first]
    key = taste * np.einsum("ij,ij->i", user_f[u], item_f[i]) / sd - np.log(-np.log(rng.random(u.size)))
    order = np.lexsort((-key, u))
    u, i = u[order], i[order]
    keep = _rank_within(u) < counts[u]
    owners, items = u[keep], i[keep]
    need = counts - np.bincount(owners, minlength=counts.size)
    extra_u, extra_i = [owners], [items]
    for who in np.flatnonzero(need):
        free = np.setdiff1d(np.arange(n_items), items[owners == who])
        logits = np.log(popularity[free]) + taste * (item_f[free] @ user_f[who]) / sd
        p = np.exp(logits - logits.max())
        extra_i.append(rng.choice(free, size=int(need[who]), replace=False, p=p / p.sum()))
        extra_u.append(np.full(int(need[who]), who))
    owners, items = np.concatenate(extra_u).astype(np.int64), np.concatenate(extra_i).astype(np.int64)
    order = np.argsort(owners, kind="stable")
    return owners[order], items[order]


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Position of each element inside its run of equal group ids (groups need not be sorted)."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    pos = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size]))
    rank = np.empty_like(pos)
    rank[order] = pos
    return rank


def _write_lines(path: Path, lines: list[str]) -> None:
    with open(path, "w", encoding="latin-1", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))


def _items(rng, n_items: int, item_f: np.ndarray) -> list[str]:
    """u.item lines: id|title|release date|video release date|IMDb URL|19 genre flags."""
    # Genres from item factors so they carry signal; ~1.7 genres per item like ML-100k.
    w = rng.normal(0, 1.0, (N_FACTORS, len(c.GENRE_NAMES)))
    b = np.full(len(c.GENRE_NAMES), -2.2)
    b[0] = -7.0                                        # 'unknown' is rare
    b[[5, 8]] = -0.9                                   # Comedy and Drama are common
    flags = rng.random((n_items, len(c.GENRE_NAMES))) < _sigmoid(item_f @ w / np.sqrt(N_FACTORS) + b)
    none = ~flags.any(axis=1)
    flags[none, 1 + np.argmax((item_f @ w)[none, 1:], axis=1)] = True
    years = np.clip(np.round(1998 - rng.gamma(1.3, 6.0, n_items)), 1922, 1998).astype(int)
    day = np.where(rng.random(n_items) < 0.8, 1, rng.integers(1, 29, n_items))
    month = np.where(day == 1, 0, rng.integers(0, 12, n_items))
    empty = rng.random(n_items) < 0.003
    if n_items >= 20:
        empty[rng.integers(n_items)] = True            # at least one item without a date, as in ML-100k
    a = rng.integers(len(_WORDS_A), size=n_items)
    bw = rng.integers(len(_WORDS_B), size=n_items)
    lines = []
    for i in range(n_items):
        title = f"{_WORDS_A[a[i]]} {_WORDS_B[bw[i]]} {i + 1} ({years[i]})"
        date = "" if empty[i] else f"{day[i]:02d}-{_MONTHS[month[i]]}-{years[i]}"
        url = "" if empty[i] else "http://us.imdb.com/M/title-exact?" + quote(title, safe="()", encoding="latin-1")
        bits = "|".join("1" if f else "0" for f in flags[i])
        lines.append(f"{i + 1}|{title}|{date}||{url}|{bits}")
    return lines


def _users(rng, n_users: int) -> list[str]:
    """u.user lines: id|age|gender|occupation|zip code."""
    ages = np.clip(np.round(rng.normal(33, 12, n_users)), 7, 73).astype(int)
    gender = np.where(rng.random(n_users) < 0.71, "M", "F")
    occ = rng.integers(len(OCCUPATIONS), size=n_users)
    zips = rng.integers(0, 100_000, n_users)
    odd = rng.random(n_users) < 0.01                   # a few Canadian-style codes, as in ML-100k
    return [
        f"{u + 1}|{ages[u]}|{gender[u]}|{OCCUPATIONS[occ[u]]}|"
        + (f"T{zips[u] % 10}H{zips[u] % 7}N" if odd[u] else f"{zips[u]:05d}")
        for u in range(n_users)
    ]


def generate(out_dir, n_users: int, n_items: int, n_ratings: int, seed: int = 0, taste: float = 0.0) -> Path:
    """Write u.data, u.item, u.user, u.genre, u.occupation into out_dir; returns out_dir.

    taste > 0: users also choose *which* items to rate by their factors (p ∝ popularity·exp(taste·<p_u, q_i>/sd)),
    as real users do, so a model can beat plain popularity at ranking; 0 (default) draws by popularity only.
    The taste draw is exact while a chunk's users x items fit EXACT_TASTE_CELLS; beyond (ML-25M size) it
    resamples popularity-drawn candidates by taste (`_sample_by_taste_resampled`), in flat memory.
    """
    if min(n_users, n_items, n_ratings) < 1:
        raise ValueError("n_users, n_items and n_ratings must all be positive")
    if n_ratings > MAX_DENSITY * n_users * n_items:
        raise ValueError(f"{n_ratings} ratings do not fit {n_users} users x {n_items} items "
                         f"at density <= {MAX_DENSITY} (unique pairs)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # Latent structure: rating ~ mu + b_u + b_i + <p_u, q_i> + noise, clipped to 1..5.
    user_f = rng.normal(0, 1, (n_users, N_FACTORS)) * 0.42
    item_f = rng.normal(0, 1, (n_items, N_FACTORS)) * 0.42
    user_b = rng.normal(0, 0.35, n_users)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.95   # Zipf-like, shuffled across ids
    popularity = popularity[rng.permutation(n_items)]
    logpop = np.log(popularity)
    item_b = 0.25 * (logpop - logpop.mean()) / (logpop.std() + 1e-9) + rng.normal(0, 0.4, n_items)
    counts = _user_counts(rng, n_users, n_items, n_ratings)
    start = rng.integers(START_TS, END_TS - 86_400, n_users)
    span = np.minimum(rng.exponential(40 * 86_400, n_users) + 3600, END_TS - start)

    # spread of <p_u, q_i> for the resampled taste draw (the exact one uses its chunk's own)
    taste_sd = float((user_f[:1000] @ item_f[:2000].T).std()) + 1e-9
    _write_lines(out / "u.item", _items(rng, n_items, item_f))
    _write_lines(out / "u.user", _users(rng, n_users))
    _write_lines(out / "u.genre", [f"{g}|{i}" for i, g in enumerate(c.GENRE_NAMES)] + [""])
    _write_lines(out / "u.occupation", list(OCCUPATIONS))

    tmp = out / "u.data.tmp"
    opts = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    schema = pa.schema([("u", pa.int32()), ("i", pa.int32()), ("r", pa.int8()), ("t", pa.int64())])
    with pacsv.CSVWriter(str(tmp), schema, write_options=opts) as writer:
        for lo in range(0, n_users, USERS_PER_CHUNK):
            hi = min(lo + USERS_PER_CHUNK, n_users)
            crng = np.random.default_rng([seed, lo])   # per-chunk stream: same output at any chunking order
            if taste and (hi - lo) * n_items <= EXACT_TASTE_CELLS:
                users, items = _sample_by_taste(crng, counts[lo:hi], popularity, user_f[lo:hi], item_f, taste)
            elif taste:
                users, items = _sample_by_taste_resampled(crng, counts[lo:hi], popularity, user_f[lo:hi], item_f,
                                                          taste, taste_sd)
            else:
                users, items = _sample_items(crng, counts[lo:hi], popularity)
            users += lo
            score = (3.53 + user_b[users] + item_b[items]
                     + np.einsum("ij,ij->i", user_f[users], item_f[items])
                     + crng.normal(0, 0.75, users.size))
            rating = np.clip(np.rint(score), 1, 5).astype(np.int8)
            ts = start[users] + (crng.random(users.size) * span[users]).astype(np.int64)
            shuffle = crng.permutation(users.size)        # ML-100k's u.data is not sorted
            writer.write_table(pa.table({
                "u": (users[shuffle] + 1).astype(np.int32), "i": (items[shuffle] + 1).astype(np.int32),
                "r": rating[shuffle], "t": ts[shuffle],
            }, schema=schema))
    os.replace(tmp, out / "u.data")
    return out


def main(argv: list[str] | None = None, prog: str = "python -m tasks.sources.synthetic",
         parser: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> int:
    """CLI entry: generate a synthetic data set (`lensflow synth` passes its name and its one-line parser)."""
    ap = parser(prog=prog, description=generate.__doc__)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--users", type=int, default=943)
    ap.add_argument("--items", type=int, default=1682)
    ap.add_argument("--ratings", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--taste", type=float, default=0.0,
                    help="> 0: users pick items by their factors too, so a model can beat popularity (default 0)")
    a = ap.parse_args(argv)
    out = generate(a.out, a.users, a.items, a.ratings, a.seed, taste=a.taste)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
