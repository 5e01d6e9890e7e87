"""Publication health, measured: reach and bias of a publication's own tables.

`measure` reads the staged tables (recommendations, similar_items) with the ratings, movies and users they
were made from and returns {metric name: value}; the names are the constants below. Their history is
tasks/stores/metrics_history.py; the narrowing warnings against the previous live publication are
tasks/publishing/narrowing.py. Definitions: docs/publication_health.md.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tasks.core import contract as c
from tasks.learning import evaluate as ev

TOP_K = 10                 # the "top-10" of every @10 metric
TOP_SHARE = 0.01           # "the most-exposed 1 % of items": ceil(1 % of the catalogue), at least one item

# --- metric names (lowercase snake case; values are floats, NaN where undefined) ----------------------
N_USERS = "n_users"                                    # users in u.user
N_ITEMS = "n_items"                                    # items in u.item (the catalogue)
LIST_LENGTH = "list_length"                            # n: the longest list in recommendations
USERS_WITH_RECOMMENDATIONS_SHARE = "users_with_recommendations_share"
FALLBACK_SHARE = "fallback_share"                      # users whose list is not from the model
SIDE_INFO_SHARE = "side_info_share"                    # users whose list comes from side information
POPULARITY_FALLBACK_SHARE = "popularity_fallback_share"  # users whose list is the popularity fallback
COVERAGE_AT_10 = "coverage_at_10"                      # catalogue share in anyone's top-10
COVERAGE_AT_N = "coverage_at_n"                        # catalogue share in anyone's list
GINI_AT_10 = "gini_at_10"                              # Gini of top-10 exposure over the catalogue
TOP1PCT_SHARE_AT_10 = "top1pct_share_at_10"            # top-10 slots taken by the most-exposed 1 %
TOP_ITEM_REACH_AT_10 = "top_item_reach_at_10"          # users whose top-10 holds the most-exposed item
REC_POPULARITY_MEAN_AT_10 = "rec_popularity_mean_at_10"      # mean rating count over top-10 slots
REC_POPULARITY_MEDIAN_AT_10 = "rec_popularity_median_at_10"
REC_POPULARITY_PERCENTILE_MEAN_AT_10 = "rec_popularity_percentile_mean_at_10"  # catalogue mean: 0.5
REC_POPULARITY_PERCENTILE_MEDIAN_AT_10 = "rec_popularity_percentile_median_at_10"
CATALOGUE_POPULARITY_MEAN = "catalogue_popularity_mean"      # mean rating count over the catalogue
CATALOGUE_POPULARITY_MEDIAN = "catalogue_popularity_median"
POPULARITY_LIFT_AT_10 = "popularity_lift_at_10"        # rec_popularity_mean_at_10 / catalogue mean
NEIGHBOUR_LIST_LENGTH = "neighbour_list_length"        # k: the longest list in similar_items
ITEMS_WITH_SIMILAR_SHARE = "items_with_similar_share"  # catalogue share with at least one neighbour
SIMILAR_COVERAGE = "similar_coverage"                  # catalogue share that is someone's neighbour
SIMILAR_GINI = "similar_gini"                          # Gini of neighbour exposure over the catalogue
SIMILAR_TOP1PCT_SHARE = "similar_top1pct_share"        # neighbour slots taken by the most-exposed 1 %
POPULARITY_BOOST = "popularity_boost"                  # ranking setting, recorded when given

METRICS = (
    N_USERS, N_ITEMS, LIST_LENGTH, USERS_WITH_RECOMMENDATIONS_SHARE, FALLBACK_SHARE, SIDE_INFO_SHARE,
    POPULARITY_FALLBACK_SHARE, COVERAGE_AT_10, COVERAGE_AT_N, GINI_AT_10, TOP1PCT_SHARE_AT_10,
    TOP_ITEM_REACH_AT_10, REC_POPULARITY_MEAN_AT_10, REC_POPULARITY_MEDIAN_AT_10,
    REC_POPULARITY_PERCENTILE_MEAN_AT_10, REC_POPULARITY_PERCENTILE_MEDIAN_AT_10, CATALOGUE_POPULARITY_MEAN,
    CATALOGUE_POPULARITY_MEDIAN, POPULARITY_LIFT_AT_10, NEIGHBOUR_LIST_LENGTH, ITEMS_WITH_SIMILAR_SHARE,
    SIMILAR_COVERAGE, SIMILAR_GINI, SIMILAR_TOP1PCT_SHARE,
)
SOURCE_MODEL, SOURCE_SIDE_INFO, SOURCE_POPULARITY = c.SOURCE_MODEL, c.SOURCE_SIDE_INFO, c.SOURCE_POPULARITY


# --- measuring ------------------------------------------------------------------------------------------
class _Catalogue:
    """Maps item ids to catalogue positions 0..n-1 (a dense lookup table when ids are small, else a search)."""

    def __init__(self, item_ids):
        self.ids = np.unique(np.asarray(item_ids, dtype=np.int64))
        self.n = len(self.ids)
        top = int(self.ids[-1]) if self.n else -1
        self.lut = None
        if self.n and self.ids[0] >= 0 and top <= 4 * self.n + 1_000_000:
            self.lut = np.full(top + 1, -1, dtype=np.int64)
            self.lut[self.ids] = np.arange(self.n)

    def positions(self, ids) -> np.ndarray:
        """Catalogue positions of the ids that are in the catalogue; others dropped."""
        ids = np.asarray(ids, dtype=np.int64)
        if not self.n:
            return np.empty(0, np.int64)
        if self.lut is not None:
            inside = (ids >= 0) & (ids < len(self.lut))
            pos = self.lut[np.where(inside, ids, 0)]
            return pos[inside & (pos >= 0)]
        pos = np.clip(np.searchsorted(self.ids, ids), 0, self.n - 1)
        return pos[self.ids[pos] == ids]

    def reached(self, ids) -> int:
        """How many catalogue items occur among the ids."""
        return int((np.bincount(self.positions(ids), minlength=self.n) > 0).sum())


def _top_share(exposure: np.ndarray) -> float:
    """Share of all slots taken by the ceil(TOP_SHARE · catalogue) most-exposed items."""
    total = exposure.sum()
    if not len(exposure) or total == 0:
        return math.nan
    m = max(1, math.ceil(TOP_SHARE * len(exposure)))
    return float(np.partition(exposure, len(exposure) - m)[-m:].sum() / total)


def _gini(positions: np.ndarray, n_catalogue: int) -> float:
    return ev.gini(positions, n_catalogue) if len(positions) and n_catalogue else math.nan


def _share(part: float, whole: float) -> float:
    return float(part / whole) if whole else math.nan


def _percentiles(counts: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of each catalogue item's rating count: (#below + ½·#equal) / n, in [0, 1]."""
    ordered = np.sort(counts)
    below = np.searchsorted(ordered, counts, side="left")
    equal = np.searchsorted(ordered, counts, side="right") - below
    return (below + 0.5 * equal) / len(counts)


def _first_rows(users: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Index of each user's best-ranked row (one linear pass when rows are sorted by user and rank)."""
    if not len(users):
        return np.empty(0, np.int64)
    same = users[1:] == users[:-1]
    if (users[1:] >= users[:-1]).all() and (~same | (ranks[1:] > ranks[:-1])).all():
        return np.flatnonzero(np.r_[True, ~same])
    order = np.lexsort((ranks, users))
    return order[np.r_[True, users[order][1:] != users[order][:-1]]]


def measure(recommendations: pd.DataFrame, similar_items: pd.DataFrame, ratings: pd.DataFrame,
            movies: pd.DataFrame, users: pd.DataFrame, *, popularity_boost: float | None = None) -> dict[str, float]:
    """Reach and bias figures of one publication's tables (names: METRICS; definitions in the module doc).

    Catalogue: the movies' item ids; popularity: an item's rating count in `ratings` (0 when unrated).
    Top-10 means rank <= 10. A user's list counts as a fallback when its best-ranked row's source is not
    'model'. `popularity_boost`, when given, is recorded as the setting that ranked the lists.
    """
    catalogue = _Catalogue(movies[c.ITEM_ID].to_numpy(np.int64))
    n_cat = catalogue.n
    population = np.unique(users[c.USER_ID].to_numpy(np.int64))
    out: dict[str, float] = {N_USERS: float(len(population)), N_ITEMS: float(n_cat)}

    # recommendations: who gets a list, and from which source
    rec_users = recommendations[c.USER_ID].to_numpy(np.int64)
    rec_ranks = recommendations[c.RANK].to_numpy(np.int64)
    rec_items = recommendations[c.ITEM_ID].to_numpy(np.int64)
    served = np.unique(rec_users)
    out[LIST_LENGTH] = float(rec_ranks.max()) if len(rec_ranks) else 0.0
    out[USERS_WITH_RECOMMENDATIONS_SHARE] = _share(np.isin(population, served).sum(), len(population))
    first = _first_rows(rec_users, rec_ranks)
    sources = recommendations[c.SOURCE].to_numpy()[first] if len(first) else np.empty(0, object)
    out[FALLBACK_SHARE] = _share((sources != SOURCE_MODEL).sum(), len(served))
    out[SIDE_INFO_SHARE] = _share((sources == SOURCE_SIDE_INFO).sum(), len(served))
    out[POPULARITY_FALLBACK_SHARE] = _share((sources == SOURCE_POPULARITY).sum(), len(served))

    # exposure of items in the top-10 and in the whole lists
    top = rec_ranks <= TOP_K
    pos_top = catalogue.positions(rec_items[top])
    exposure = np.bincount(pos_top, minlength=n_cat)
    out[COVERAGE_AT_10] = _share((exposure > 0).sum(), n_cat)
    out[COVERAGE_AT_N] = _share(catalogue.reached(rec_items), n_cat)
    out[GINI_AT_10] = _gini(pos_top, n_cat)
    out[TOP1PCT_SHARE_AT_10] = _top_share(exposure)
    out[TOP_ITEM_REACH_AT_10] = _share(exposure.max(initial=0), len(served))

    # popularity of what is recommended against the catalogue
    counts = np.bincount(catalogue.positions(ratings[c.ITEM_ID].to_numpy(np.int64)), minlength=n_cat)
    counts = counts.astype(np.float64)
    pct = _percentiles(counts) if n_cat else counts
    slot_counts, slot_pct = counts[pos_top], pct[pos_top]
    nan_if_empty = lambda f, x: float(f(x)) if len(x) else math.nan  # noqa: E731
    out[REC_POPULARITY_MEAN_AT_10] = nan_if_empty(np.mean, slot_counts)
    out[REC_POPULARITY_MEDIAN_AT_10] = nan_if_empty(np.median, slot_counts)
    out[REC_POPULARITY_PERCENTILE_MEAN_AT_10] = nan_if_empty(np.mean, slot_pct)
    out[REC_POPULARITY_PERCENTILE_MEDIAN_AT_10] = nan_if_empty(np.median, slot_pct)
    out[CATALOGUE_POPULARITY_MEAN] = nan_if_empty(np.mean, counts)
    out[CATALOGUE_POPULARITY_MEDIAN] = nan_if_empty(np.median, counts)
    mean_cat = out[CATALOGUE_POPULARITY_MEAN]
    out[POPULARITY_LIFT_AT_10] = out[REC_POPULARITY_MEAN_AT_10] / mean_cat if mean_cat else math.nan

    # similar items: which items have neighbours, and how evenly items are used as neighbours
    sim_ranks = similar_items[c.RANK].to_numpy(np.int64)
    out[NEIGHBOUR_LIST_LENGTH] = float(sim_ranks.max()) if len(sim_ranks) else 0.0
    out[ITEMS_WITH_SIMILAR_SHARE] = _share(catalogue.reached(similar_items[c.ITEM_ID].to_numpy(np.int64)), n_cat)
    pos_sim = catalogue.positions(similar_items[c.SIMILAR_ITEM_ID].to_numpy(np.int64))
    sim_exposure = np.bincount(pos_sim, minlength=n_cat)
    out[SIMILAR_COVERAGE] = _share((sim_exposure > 0).sum(), n_cat)
    out[SIMILAR_GINI] = _gini(pos_sim, n_cat)
    out[SIMILAR_TOP1PCT_SHARE] = _top_share(sim_exposure)
    if popularity_boost is not None:
        out[POPULARITY_BOOST] = float(popularity_boost)
    return out
