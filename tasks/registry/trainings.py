"""Trainings and serving fits in the registry: their fingerprints (found again instead of retrained) and
recording one (log, register, maybe promote)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from models import config as model_configs
from models.config import ModelConfig
from tasks.core import contract as c
from tasks.core.faults import maybe_crash
from tasks.core.settings import Paths
from tasks.learning import evaluate as ev
from tasks.learning import promotion
from tasks.learning.training import TrainResult
from tasks.registry import tracking as t
from tasks.registry import mlflow_store
from tasks.registry.model_ref import ModelRef
from tasks.registry.promote import Decision, bare_metric, promote_if_better
from tasks.registry.versions import (TAG_SERVING_EVALUATED, TAG_SERVING_ROWS, describe_model, find_by_tag, register,
                                     resolve)

from tasks.stores.split_store import Split

TAG_FINGERPRINT = "training_fingerprint"  # run tag: hash of kind, config, split, data and code


def fingerprint(config: ModelConfig, split_id: str, data_hash: str, code_version: str | None = None) -> str:
    """Id of a training's inputs (the model config, split, data, code): equal fingerprints give the same model."""
    if code_version is None:
        code_version = t.code_version()
    payload = {"kind": config.kind, "config": model_configs.flat(config), "split_id": split_id,
               "data_hash": data_hash, "code": code_version}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_trained(paths, config: ModelConfig, split_id: str, data_hash: str):
    """The registered ModelRef of an identical earlier training, or None."""
    fp = fingerprint(config, split_id, data_hash)
    return find_by_tag(paths, config.kind, TAG_FINGERPRINT, fp)


def record(paths, result: TrainResult, split: Split, movies: pd.DataFrame | None, metric: str | None = None,
           k: int = 10, run_tags: dict[str, str] | None = None):
    """Log, register and maybe promote a training (record_training below), tagged so find_trained sees it next time.

    metric: what promotion compares (default: the kind's job metric, tasks.learning.promotion). A champion trained on
    another split or data is re-scored on this split's validation part, so the comparison is always on the
    same validation data, as is the floor (popularity or the bias baseline). `run_tags` go on the MLflow run.
    """
    metric = metric or promotion.PROMOTION_METRICS[result.config.kind]
    max_users = result.eval_users  # the champion and the floor are ranked on the newcomer's users

    def rescore(champion) -> dict[str, float]:
        part = split.valid if len(split.valid) else split.test
        return ev.evaluate(champion, split.train, part, k=k, max_users=max_users)

    tags = {**(run_tags or {}), TAG_FINGERPRINT: fingerprint(result.config, result.split_id, result.data_hash)}
    return record_training(paths, result, result.data_hash, movies=movies, train=split.train,
                           metric=metric, rescore=rescore, tags=tags,
                           baseline=promotion.promotion_floor(split, metric, k, max_users),
                           baseline_name=promotion.floor_name(metric))


TAG_SERVING_FINGERPRINT = "serving_fingerprint"  # run tag: hash of kind, config, data, code and 'serving'


def serving_fingerprint(config: ModelConfig, data_hash: str, code_version: str | None = None,
                        start_from: str | None = None, serving_epochs: int = 0) -> str:
    """Id of a serving fit's inputs (config, all ratings of data_hash, code, and with serving_epochs > 0 that count
    and the MLflow run id of the model it continues): equal ones give the same model."""
    if code_version is None:
        code_version = t.code_version()
    payload = {"kind": config.kind, "config": model_configs.flat(config), "data_hash": data_hash,
               "code": code_version, "fit": "serving"}
    if serving_epochs:
        if start_from is None:
            raise ValueError("a warm-started serving fit (serving_epochs > 0) is identified by the run it continues")
        payload.update(start_from=start_from, serving_epochs=serving_epochs)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_serving_fit(paths, config: ModelConfig, data_hash: str, start_from: str | None = None,
                     serving_epochs: int = 0):
    """The registered ModelRef of an identical earlier serving fit, or None."""
    return find_by_tag(paths, config.kind, TAG_SERVING_FINGERPRINT,
                       serving_fingerprint(config, data_hash, start_from=start_from, serving_epochs=serving_epochs),
                       decided=False)


@dataclass(frozen=True)
class Recorded:
    """What record_training did: the run, the new version and the promotion decision."""

    run_id: str
    version: str
    decision: Decision


def record_training(paths: Paths, result, data_hash: str, *, movies=None, train=None, metric: str | None = None,
                    rescore: Callable[[object], Mapping[str, float]] | None = None,
                    tags: Mapping[str, str] | None = None,
                    baseline: Mapping[str, float] | None = None, baseline_name: str | None = None) -> Recorded:
    """Log a `tasks.learning.training.TrainResult` as a run, register it (`candidate`) and promote it on evidence.

    Metrics are logged as valid_<name> and test_<name>; promotion compares valid_<metric> (test_<metric>
    when the split has no validation part). `rescore(champion) -> {metric: value}` on the newcomer's
    validation data lets a champion trained on another split be compared instead of refused; `tags`
    are extra run tags; `baseline` is the floor's metrics on the part promotion compares on (logged as
    promotion_floor/<baseline_name>_<part>_<name>, e.g. promotion_floor/popularity_valid_ndcg_at_10; the floor of
    `promote_if_better`). valid_<metric> and test_<metric> are logged once more as job/valid_<metric>,
    job/test_<metric>: the first chart section of the run's page (tasks.registry.tracking).
    """
    kind = result.config.kind
    metric = metric or promotion.PROMOTION_METRICS[kind]
    baseline_name = baseline_name or promotion.floor_name(bare_metric(metric))
    part = "valid_" if result.valid_metrics else "test_"
    metrics = {**{f"test_{k}": v for k, v in result.metrics.items()},
               **{f"valid_{k}": v for k, v in (result.valid_metrics or {}).items()},
               **{t.floor_metric(baseline_name, part + k): v for k, v in (baseline or {}).items()}}
    lineage = t.Lineage(kind, str(result.split_id or ""), data_hash, device=t.describe_device(result.device),
                        train_seconds=float(result.seconds))
    run_id = t.log_training(paths, result.recommender, result.config, metrics, result.history, lineage,
                            movies=movies, train=train, tags=tags, job_metric=bare_metric(metric))
    maybe_crash("train-after-log")
    version = register(paths, run_id, kind, tags=tags)
    maybe_crash("train-after-register")
    floor = (baseline or {}).get(bare_metric(metric))
    decision = promote_if_better(paths, kind, version, part + bare_metric(metric), rescore=rescore, baseline=floor,
                                 baseline_name=baseline_name)
    _describe_run(paths, run_id, f"{kind}, the {promotion.JOBS.get(kind, 'model')} model: registered as "
                                 f"{decision.name} v{version}, **{decision.outcome}** — {decision.reason}")
    return Recorded(run_id, version, decision)


def _describe_run(paths: Paths, run_id: str, text: str) -> None:
    """The run's description (the first thing its page shows): what it is and what became of it."""
    mlflow_store.client(paths).set_tag(run_id, mlflow_store.TAG_NOTE, text)


# --- serving fits: the evaluated config refitted on every rating ---------------------------------------
SERVING_MODEL_SUFFIX = "-serving"   # a serving fit's logged model: lensflow-dot_bias-serving (evaluated: lensflow-dot_bias)


def record_serving(paths: Paths, recommender, evaluated: ModelRef, data_hash: str, *, rows: int, seconds: float,
                   device: str, train=None, movies=None, tags: Mapping[str, str] | None = None) -> ModelRef:
    """Log a serving fit as its own run, register it under the `serving` alias, linked to `evaluated`.

    It was fitted on every rating, not on a split: it has no split_id tag; TAG_EVALUATED_SPLIT names the split the
    evaluated version was chosen on, TAG_SERVING_ROWS how many ratings it was fitted on, and its description says
    its metrics are the evaluated version's. It is never `candidate` nor `champion`. `tags` go on its run.
    """
    kind = recommender.config.kind
    link = {TAG_SERVING_EVALUATED: str(evaluated.version), TAG_SERVING_ROWS: str(int(rows)),
            t.TAG_EVALUATED_SPLIT: evaluated.split_id}
    lineage = t.Lineage(kind, "", data_hash, device=t.describe_device(device), train_seconds=float(seconds))
    run_id = t.log_training(paths, recommender, recommender.config, {}, recommender.history, lineage,
                            movies=movies, train=train, tags={**dict(tags or {}), **link},
                            run_name=f"{kind}-serving-fit-of-v{evaluated.version}",
                            model_name=c.registered_model_name(kind) + SERVING_MODEL_SUFFIX)
    description = (f"serving fit of champion v{evaluated.version}: its config refit on all {int(rows):,} ratings of "
                   f"data {data_hash[:12]} (no held-out part, so no evaluation of its own: its metrics are "
                   f"v{evaluated.version}'s, measured on split {evaluated.split_id}); run {run_id}")
    version = register(paths, run_id, kind, alias=c.ALIAS_SERVING, tags={**dict(tags or {}), **link},
                       description=description)
    _describe_run(paths, run_id, f"{kind}: the **{description}** (registered as {c.registered_model_name(kind)} "
                                 f"v{version}, alias {c.ALIAS_SERVING})")
    describe_model(paths, kind)
    return resolve(paths, kind, version)


def use_for_serving(paths: Paths, kind: str, version: str, evaluated: ModelRef) -> ModelRef:
    """Point `serving` at an existing serving fit, its evaluated-version tag at `evaluated` (a reused fit)."""
    cl = mlflow_store.client(paths)
    name = c.registered_model_name(kind)
    cl.set_model_version_tag(name, str(version), TAG_SERVING_EVALUATED, str(evaluated.version))
    cl.set_registered_model_alias(name, c.ALIAS_SERVING, str(version))
    describe_model(paths, kind)
    return resolve(paths, kind, str(version))
