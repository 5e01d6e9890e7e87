"""Promotion in the registry: move `champion` to a version only on evidence (beats its floor and the champion
on the same validation data), or by an operator's override; the decision is recorded on the version."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tasks.core import contract as c
from tasks.core.errors import ConfigError
from tasks.core.settings import Paths
from tasks.learning import promotion
from tasks.registry import mlflow_store
from tasks.registry.versions import (TAG_DECISION, TAG_REASON, champion_version, describe_model, load_for_scoring,
                                     resolve, version_metric)

# How each metric compares; anything not listed is higher-is-better (ndcg, precision, recall, map, hit rate).
LOWER_IS_BETTER = frozenset({"rmse", "mae", "loss", "gini"})
SPLIT_PREFIXES = ("valid_", "test_")   # record_training logs metrics per split part: valid_rmse, test_ndcg_at_10

TAG_METRIC = "promotion.metric"
TAG_BASELINE = "promotion.baseline"   # the floor's value of the metric on the same data
TAG_BASELINE_NAME = "promotion.baseline_name"   # which floor: popularity | bias_baseline (tasks.learning.promotion)
PROMOTED, KEPT, REFUSED, MANUAL = "promoted", "kept", "refused", "manual"


@dataclass(frozen=True)
class Decision:
    """Outcome of a promotion attempt and why."""

    name: str
    version: str
    promoted: bool
    outcome: str                       # promoted | kept | refused | manual
    reason: str
    metric: str | None = None
    value: float | None = None
    champion_version: str | None = None
    champion_value: float | None = None
    baseline_value: float | None = None     # the floor on the same validation data (popularity, bias baseline)
    baseline_name: str = promotion.FLOOR_POPULARITY


def lower_is_better(metric: str) -> bool:
    """True for error metrics (rmse, mae, ...), False for ranking metrics (ndcg@10, ...)."""
    base = bare_metric(metric)
    return base in LOWER_IS_BETTER or base.split("_")[0] in LOWER_IS_BETTER


def bare_metric(metric: str) -> str:
    """'valid_ndcg_at_10' -> 'ndcg_at_10': the metric without its split-part prefix."""
    key = mlflow_store.metric_key(metric).lower()
    for prefix in SPLIT_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def promote_if_better(paths: Paths, kind: str, version: str, metric: str | None = None, *,
                      rescore: Callable[[object], Mapping[str, float]] | None = None,
                      baseline: float | None = None, baseline_name: str | None = None) -> Decision:
    """Move `champion` to `version` only if it beats its floor and the champion on the same validation data.

    metric: the kind's job metric unless given (tasks.learning.promotion). `baseline`: the floor's value of `metric` on
    the same validation data (popularity for a ranking metric, the bias baseline for a rating one,
    `tasks.learning.promotion.floor_metrics`); a version that does not beat it is refused whatever the champion. Same data = same split id and data hash tags. When they differ the champion is re-scored with
    `rescore(champion_recommender)` (metrics on the newcomer's validation data) if given; otherwise the
    comparison is refused. Ties keep the champion. The decision is recorded on the version.
    """
    metric = metric or "valid_" + promotion.PROMOTION_METRICS[kind]
    floor = baseline_name or promotion.floor_name(bare_metric(metric))
    cl = mlflow_store.client(paths)
    name = c.registered_model_name(kind)
    version = str(version)
    new = cl.get_model_version(name, version)
    value = version_metric(paths, name, version, metric)
    champ = champion_version(paths, kind)
    better = "lower" if lower_is_better(metric) else "higher"

    def decide(outcome: str, reason: str, champ_value: float | None = None) -> Decision:
        d = Decision(name, version, outcome == PROMOTED, outcome, reason, metric, value, champ, champ_value,
                     baseline, floor)
        _record(cl, d, paths, kind)
        return d

    if champ == version:
        return decide(KEPT, f"version {version} already is the champion")
    if value is None:
        return decide(REFUSED, f"version {version} has no finite '{metric}' metric to compare")
    if baseline is not None and math.isfinite(baseline):
        if not (value < baseline if better == "lower" else value > baseline):
            return decide(REFUSED, f"{metric} {value:.4f} does not beat the {promotion.FLOOR_NAMES[floor]} {baseline:.4f} "
                                   f"on the same validation data ({better} is better): registered, never champion")
    if champ is None:
        return decide(PROMOTED, f"no champion yet; first version with {metric}={value:.4f}")
    old = cl.get_model_version(name, champ)
    same = all(old.tags.get(k) == new.tags.get(k) for k in (c.SPLIT_ID, c.DATA_HASH))
    if same:
        champ_value = version_metric(paths, name, champ, metric)
        basis = f"same split {new.tags.get(c.SPLIT_ID)} and data {new.tags.get(c.DATA_HASH)}"
    elif rescore is not None:
        recommender, _ = load_for_scoring(paths, kind, champ)
        scores = {mlflow_store.metric_key(k).lower(): v for k, v in dict(rescore(recommender)).items()}
        champ_value = scores.get(mlflow_store.metric_key(metric).lower(), scores.get(bare_metric(metric)))
        champ_value = float(champ_value) if champ_value is not None and math.isfinite(champ_value) else None
        basis = f"champion re-scored on split {new.tags.get(c.SPLIT_ID)} / data {new.tags.get(c.DATA_HASH)}"
    else:
        return decide(REFUSED, f"not comparable: champion v{champ} was evaluated on split "
                               f"{old.tags.get(c.SPLIT_ID)} / data {old.tags.get(c.DATA_HASH)}, v{version} on "
                               f"split {new.tags.get(c.SPLIT_ID)} / data {new.tags.get(c.DATA_HASH)}; pass "
                               f"rescore= or use promote() to override")
    if champ_value is None:
        return decide(PROMOTED, f"champion v{champ} has no finite '{metric}'; v{version} has {value:.4f} ({basis})")
    wins = value < champ_value if better == "lower" else value > champ_value
    verdict = "beats" if wins else "does not beat"
    reason = (f"{metric} {value:.4f} {verdict} champion v{champ} {champ_value:.4f} "
              f"({better} is better; {basis})")
    return decide(PROMOTED if wins else KEPT, reason, champ_value)


def promote(paths: Paths, kind: str, version: str, reason: str) -> Decision:
    """Operator override: make `version` the champion whatever its metrics, recording who-said-why."""
    if not reason or not reason.strip():
        raise ConfigError("promote needs a reason (--reason \"...\"): it is recorded on the version")
    name = c.registered_model_name(kind)
    resolve(paths, kind, str(version))  # NotFound for an unknown version
    cl = mlflow_store.client(paths)
    d = Decision(name, str(version), True, MANUAL, f"manual override: {reason.strip()}",
                 champion_version=champion_version(paths, kind))
    _record(cl, d, paths, kind)
    return d


def _record(cl, d: Decision, paths: Paths, kind: str) -> None:
    """Tags and description on the version (the decision first: the model page shows a description's start);
    moves `champion` when promoted and takes `candidate` off it, then says on the model which version serves."""
    if d.outcome in (PROMOTED, MANUAL):
        cl.set_registered_model_alias(d.name, c.ALIAS_CHAMPION, d.version)
        if str(cl.get_registered_model(d.name).aliases.get(c.ALIAS_CANDIDATE, "")) == d.version:
            cl.delete_registered_model_alias(d.name, c.ALIAS_CANDIDATE)   # a candidate is not the champion
    tags = [(TAG_DECISION, d.outcome), (TAG_REASON, d.reason), (TAG_METRIC, d.metric or "")]
    if d.baseline_value is not None:
        tags += [(TAG_BASELINE, f"{d.baseline_value:.6f}"), (TAG_BASELINE_NAME, d.baseline_name)]
    for key, value in tags:
        cl.set_model_version_tag(d.name, d.version, key, value)
    mv = cl.get_model_version(d.name, d.version)
    origin = (mv.description or "").split(DECISION_END)[-1]
    cl.update_model_version(d.name, d.version, description=f"{d.outcome} — {d.reason}{DECISION_END}{origin}")
    describe_model(paths, kind)


DECISION_END = "\n\n"   # a version's description: the decision and why, then where the version comes from
