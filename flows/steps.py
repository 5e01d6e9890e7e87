"""Every Prefect task of lensflow: one thin wrapper per library function, named for what it does.

The functions live in tasks/ and know nothing of Prefect. Retries only where a step touches the
network or files that may be briefly unavailable (acquire, lake and model reads); compute and writes
never retry (a retried registry write would register twice). DataFrames and models pass in memory:
no caching, no persisted results.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from pathlib import Path

import flows.prefect_home  # noqa: F401  (first: Prefect needs its home's parents to exist)
from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from flows import logs

from tasks.core import contract as c
from tasks.sources import acquire
from tasks.core import durable
from tasks.core import faults
from tasks.stores import lake
from tasks.sources import movielens
from tasks.runs import report
from tasks.registry import promote
from tasks.registry import serving
from tasks.publishing import sharding
from tasks.learning import split
from tasks.stores import split_store
from tasks.registry import tracking
from tasks.learning import training
from tasks.learning import kind_config
from tasks.registry import trainings
from tasks.publishing import publish as publishing
from tasks.stores import warehouse
from tasks.core.errors import InputError, SourceUnavailable


logs.name_task_runs()   # every task run's log line in the Prefect UIs names its task run


def step(fn, name: str, run_name: str | None = None, *, retries: int = 0, **options):
    """A Prefect task around a plain function: no cache, no persisted result, retries only if asked.
    ($LENSFLOW_PAUSE_AT=<name>:<file> holds the run just before the step: tasks/core/faults.py, for the tests.)"""
    fn = _pausable(fn, name)
    return task(fn, name=name, task_run_name=run_name or name, retries=retries, cache_policy=NO_CACHE,
                persist_result=False, **options)


def _pausable(fn, name: str):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        faults.maybe_pause(name)
        return fn(*args, **kwargs)

    return run


# Errors of the path itself (too long a name, read-only, full disk): trying again changes nothing.
PERMANENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM})
PERMANENT = (InputError, SourceUnavailable, FileNotFoundError, NotADirectoryError, IsADirectoryError,
             PermissionError, LookupError, ValueError, TypeError)


def _transient(task_, task_run, state) -> bool:
    """Retry only what may pass: I/O hiccups and a corrupted download (fetched again).

    Never bad input, a missing path, a permission, an unknown id, or an unreachable download
    (acquire already retried it with back-off): those fail at once, and the same way every time.
    """
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS:
        return False
    return isinstance(exc, acquire.ChecksumMismatch) or not isinstance(exc, PERMANENT)


def _split_logged(paths, ratings, spec, data_hash) -> split_store.Split:
    """get_or_create, logging whether the stored split was reused."""
    chosen = split.get_or_create(paths, ratings, spec, data_hash)
    get_run_logger().info("split %s %s: %s", chosen.split_id, "reused" if chosen.reused else "created",
                          chosen.counts())
    return chosen


def _split_once(paths, spec, data_hash) -> dict:
    """The pipeline's split, made before its trainings so they load it by id instead of each making it.

    Returns its id and whether it was already stored; the live ratings are read only when it was not.
    """
    sid = split_store.split_id(spec, data_hash)
    if split_store.is_stored(paths, sid):
        get_run_logger().info("split %s reused", sid)
        return {c.SPLIT_ID: sid, "reused": True}
    chosen = _split_logged(paths, lake.read(paths, c.RATINGS), spec, data_hash)
    return {c.SPLIT_ID: chosen.split_id, "reused": chosen.reused, **chosen.counts()}


def source_label(source) -> str:
    """What a source is called in run names: its folder or zip name, else the GroupLens download."""
    chosen = source or os.environ.get(acquire.SOURCE_ENV)
    return Path(str(chosen)).name or str(chosen) if chosen else "grouplens-download"


def _acquire_run_name(parameters: dict) -> str:
    return f"acquire-{source_label(parameters.get('source'))}"


def say(line: str) -> None:
    """One INFO line on the current flow or task run's log (what happened, for the Prefect UI)."""
    get_run_logger().info("%s", line)


def name_parent_task_run() -> None:
    """Give the parent's placeholder task run of this subflow the subflow's name ('ingest-0' otherwise)."""
    ctx = FlowRunContext.get()
    parent = ctx.flow_run.parent_task_run_id if ctx and ctx.flow_run else None
    if parent is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.set_task_run_name(parent, flow_run.get_name() or ctx.flow_run.name)
    except PrefectHTTPStatusError as e:  # a name is cosmetic: never fail a run for it
        get_run_logger().warning("could not name the parent task run %s: %s", parent, e)


def flow_run_tags() -> dict[str, str]:
    """The current Prefect flow run as MLflow run tags (id and name), for the library to pass down."""
    run_id = flow_run.get_id()
    return {tracking.TAG_FLOW_RUN_ID: str(run_id), tracking.TAG_FLOW_RUN_NAME: flow_run.get_name() or ""} \
        if run_id else {}


def _fit_logged(split, plan: kind_config.KindSettings, users=None, movies=None, k: int = 10,
                device: str | None = None) -> training.TrainResult:
    """train_and_evaluate, logging each epoch's losses (named by the loss) and the kind's job metrics."""
    logger = get_run_logger()
    config = plan.config
    loss = tracking.loss_metric(config.loss.name)

    def log(row: dict) -> None:
        valid = f", valid_{loss} {row['valid_loss']:.4f}" if row.get("valid_loss") is not None else ""
        logger.info("%s epoch %d/%d: train_%s %.4f%s (%.1f s)", config.kind, row["epoch"] + 1, config.train.epochs,
                    loss, row["train_loss"], valid, row["seconds"])

    result = training.train_and_evaluate(split, config, users, movies, k=k, device=device, log=log,
                                         eval_users=plan.eval_users)
    shown = ", ".join(f"{key} {result.metrics[key]:.4f}" for key in report.job_metrics(config.kind)
                      if key in result.metrics)
    logger.info("%s (%s) fitted and evaluated in %.1f s on %s: test %s", config.kind, config.loss.name,
                result.seconds, result.device, shown)
    return result


def _record_tagged(paths, result, split, movies, metric: str | None = None, k: int = 10):
    """trainings.record with the Prefect flow run tagged on the MLflow run."""
    return trainings.record(paths, result, split, movies, metric, k, run_tags=flow_run_tags())


def _serving_tagged(paths, kind: str, ratings, users, movies, data_hash: str, device=None, serving_epochs: int = 0):
    """serving.fit_serving with the Prefect flow run tagged on its MLflow run, as a training's is."""
    return serving.fit_serving(paths, kind, ratings, users, movies, data_hash, device, serving_epochs,
                               run_tags=flow_run_tags())


def _mark_reused(paths, kind: str, version: str) -> None:
    """registry.mark_reused for the current flow run, so a pipeline can tell what this run reused."""
    from tasks.registry import versions as registry

    run_id = flow_run.get_id()
    if run_id:
        registry.mark_reused(paths, kind, version, str(run_id), flow_run.get_name() or "")


def _summary_logged(paths, kind: str, version: str, **kw) -> dict:
    """report.training_summary, logging the decision and why, the metric and the MLflow run's link."""
    summary = report.training_summary(paths, kind, version, **kw)
    refused = summary["decision"] == promote.REFUSED   # registered, never champion: worth a look
    get_run_logger().log(logging.WARNING if refused else logging.INFO, "%s", report.training_line(summary))
    return summary


# --- shared -----------------------------------------------------------------------------------------
sweep = step(durable.sweep, "sweep-leftovers", log_prints=True)
lake_snapshot = step(lake.current, "read-lake-pointer", retries=2, retry_delay_seconds=1,
                     retry_condition_fn=_transient)
read_table = step(lake.read, "read-lake-table", "read-{table_name}", retries=2, retry_delay_seconds=1,
                  retry_condition_fn=_transient)

# --- ingest -----------------------------------------------------------------------------------------
fetch_source = step(acquire.resolve_source, "acquire-source", _acquire_run_name, retries=2,
                    retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=_transient)
hash_source = step(movielens.content_hash, "hash-source-files")
warehouse_up_to_date = step(warehouse.up_to_date, "check-warehouse-up-to-date")
validate_source = step(movielens.read_sources, "validate-source-files")
write_lake = step(lake.write_snapshot, "write-lake-snapshot", "write-lake-{data_hash:.12}")
promote_lake = step(warehouse.publish_snapshot, "promote-lake-and-rebuild-warehouse", "rebuild-warehouse-{data_hash:.12}")

# --- train ------------------------------------------------------------------------------------------
kind_settings = step(kind_config.kind_settings, "resolve-model-config", "config-{kind}")
make_or_reuse_split = step(_split_logged, "split-ratings", "split-{spec.strategy}-seed{spec.seed}")
split_for_trainings = step(_split_once, "split-for-trainings", "split-{spec.strategy}-seed{spec.seed}", retries=2,
                          retry_delay_seconds=1, retry_condition_fn=_transient)
load_split = step(split_store.load, "load-stored-split", "load-split-{sid}")
set_current_split = step(split_store.set_current, "set-current-split", "current-split-{sid}")
find_trained = step(trainings.find_trained, "find-identical-training", "find-trained-{config.kind}")
train_and_evaluate = step(_fit_logged, "fit-and-evaluate", "fit-{plan.config.kind}-{plan.config.loss.name}")
summarize_unregistered = step(training.summarize, "summarize-unregistered-training", "summary-{result.config.kind}")
record_training = step(_record_tagged, "log-register-promote", "register-{result.config.kind}")
training_summary = step(_summary_logged, "summarize-training", "summary-{kind}-v{version}")
mark_reused = step(_mark_reused, "mark-reused-version", "mark-reused-{kind}-v{version}")

# --- publish ----------------------------------------------------------------------------------------
load_champions = step(serving.load_champions, "load-champion-models", "load-{alias}-models", retries=2,
                      retry_delay_seconds=2, retry_condition_fn=_transient)
choose_roles = step(serving.roles, "choose-serving-models", "choose-serving-models")
publication_up_to_date = step(warehouse.live_publication_matches, "check-publication-up-to-date")
score_shard = step(sharding.score_shard, "score-user-range", "score-users-{lo}-{hi}")
score_cold = step(sharding.score_cold, "score-unlearnt-users", "score-unlearnt-users")
# No retries: scoring is not I/O, and a failed check must not be retried into a publish.
publish = step(publishing.publish, "score-check-publish")

# --- serving fit (the evaluated config on every rating) --------------------------------------------
serving_kinds = step(serving.serving_kinds, "choose-kinds-to-serve", "kinds-to-serve")
fit_serving = step(_serving_tagged, "fit-on-all-ratings", "serving-fit-{kind}")
