"""Each model kind's job: the metric it is promoted on, and the floor it must beat on the same data first.

The ranking model (dot_bias) orders the published lists: promoted on NDCG@10 above plain most-rated popularity.
The rating model (embedding_nn) says what a user would rate each listed movie: promoted on RMSE above the
classic bias baseline (global mean + regularised user and item biases). Either can be overridden per kind
(`--promotion-metric KIND=METRIC`); the floor follows the metric: a rating metric's floor is the bias baseline,
a ranking metric's is popularity.
"""

from __future__ import annotations

import difflib

import pandas as pd

from tasks.core import contract as c
from tasks.learning import evaluate as ev
from tasks.learning.baselines import BiasBaseline, MostRated
from tasks.core.errors import ConfigError

PROMOTION_METRICS = {c.MODEL_KIND_DOT: "ndcg_at_10", c.MODEL_KIND_NN: "rmse"}
JOBS = {c.MODEL_KIND_DOT: "ranking", c.MODEL_KIND_NN: "rating"}
RATING_METRICS = ("rmse", "mae")
RANKING_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage", "gini")
# the floors; their run metrics (promotion_floor/popularity_valid_ndcg_at_10) are named by tasks.registry.tracking
FLOOR_POPULARITY, FLOOR_BIAS = "popularity", "bias_baseline"
FLOOR_NAMES = {FLOOR_POPULARITY: "popularity baseline", FLOOR_BIAS: "bias baseline"}


def is_rating_metric(metric: str) -> bool:
    """rmse, mae (with or without a valid_/test_ prefix)."""
    return metric.split("_", 1)[-1] in RATING_METRICS or metric in RATING_METRICS


def check_metric(metric: str, k: int = 10) -> str:
    """`metric` if evaluation reports it: a ranking metric at k, or a rating metric."""
    known = sorted(f"{name}_at_{k}" for name in RANKING_METRICS) + list(RATING_METRICS)
    if metric not in known:
        near = difflib.get_close_matches(metric, known, 1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"promotion metric {metric!r}{hint}: use one of {', '.join(known)}")
    return metric


def promotion_metric(config, override: str | None = None, k: int = 10) -> str:
    """What a model of this config is promoted on: its kind's job metric, or `override`. A model whose scores
    are no ratings (a ranking loss) cannot be promoted on a rating metric."""
    metric = check_metric(override or PROMOTION_METRICS[config.kind], k)
    if is_rating_metric(metric) and config.loss.name != "mse":
        raise ConfigError(f"promotion metric {metric!r} for {config.kind}: its {config.loss.name} scores are no "
                          f"ratings; use a ranking metric such as {PROMOTION_METRICS[c.MODEL_KIND_DOT]}")
    return metric


def promotion_metrics(overrides: dict[str, str] | None = None, k: int = 10) -> dict[str, str]:
    """Per-kind overrides ({kind: metric}) with their kinds and metric names checked (the rest is each kind's job)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(c.MODEL_KINDS))
    if unknown:
        raise ConfigError(f"promotion metric for unknown model kind(s) {unknown}; kinds are {', '.join(c.MODEL_KINDS)}")
    return {kind: check_metric(metric, k) for kind, metric in overrides.items()}


def parse(values: list[str] | None) -> dict[str, str]:
    """`--promotion-metric` values (KIND=METRIC, repeatable) as {kind: metric}."""
    out = {}
    for value in values or []:
        kind, sep, metric = value.partition("=")
        if not sep or not metric:
            raise ConfigError(f"--promotion-metric {value!r}: give KIND=METRIC, e.g. {c.MODEL_KIND_NN}=mae")
        out[kind.strip()] = metric.strip()
    return out


def floor_name(metric: str) -> str:
    """The floor a metric is held against: the bias baseline for a rating metric, else popularity."""
    return FLOOR_BIAS if is_rating_metric(metric) else FLOOR_POPULARITY


def floor_metrics(metric: str, train: pd.DataFrame, test: pd.DataFrame, k: int = 10,
                  max_users: int = 0) -> dict[str, float]:
    """The floor's metrics on `test` when fitted on `train`: the bias baseline's rating error, or popularity's
    ranking metrics (max_users: the same sample of users the model was ranked on)."""
    if is_rating_metric(metric):
        return ev.rating_metrics(BiasBaseline(train), test)
    ranked = ev.evaluate(MostRated(train), train, test, k=k, max_users=max_users)
    return {name: value for name, value in ranked.items() if not is_rating_metric(name)}   # a ranking floor


def promotion_floor(split, metric: str, k: int = 10, max_users: int = 0) -> dict[str, float]:
    """The floor's metrics on the part promotion compares on (valid, else test): popularity for a ranking
    metric, the bias baseline for a rating one, fitted on what the model was fitted on.

    max_users: the same user sample the model was ranked on (KindSettings.eval_users; 0 = all users)."""
    if len(split.valid):
        return floor_metrics(metric, split.train, split.valid, k=k, max_users=max_users)
    return floor_metrics(metric, pd.concat([split.train, split.valid], ignore_index=True), split.test,
                         k=k, max_users=max_users)

