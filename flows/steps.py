"""Every Prefect task of lensflow: one thin wrapper per library function, named for what it does.

The functions live in tasks/ and know nothing of Prefect. Retries only where a step touches the
network or files that may be briefly unavailable (acquire, lake and model reads); compute and writes
never retry (a retried registry write would register twice). DataFrames and models pass in memory:
no caching, no persisted results.
"""

from __future__ import annotations

import errno

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from tasks import acquire, durable, lake, movielens, report, serving, sharding, split, training
from tasks import publish as publishing
from tasks import warehouse
from tasks.errors import InputError, SourceUnavailable


def step(fn, name: str, run_name: str | None = None, *, retries: int = 0, **options):
    """A Prefect task around a plain function: no cache, no persisted result, retries only if asked."""
    return task(fn, name=name, task_run_name=run_name or name, retries=retries, cache_policy=NO_CACHE,
                persist_result=False, **options)


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


def _split_logged(paths, ratings, spec, data_hash) -> split.Split:
    """get_or_create, logging whether the stored split was reused."""
    chosen = split.get_or_create(paths, ratings, spec, data_hash)
    get_run_logger().info("split %s %s: %s", chosen.split_id, "reused" if chosen.reused else "created",
                          chosen.counts())
    return chosen


# --- shared -----------------------------------------------------------------------------------------
sweep = step(durable.sweep, "sweep-leftovers", log_prints=True)
lake_snapshot = step(lake.current, "read-lake-pointer", retries=2, retry_delay_seconds=1,
                     retry_condition_fn=_transient)
read_table = step(lake.read, "read-lake-table", "read-{table_name}", retries=2, retry_delay_seconds=1,
                  retry_condition_fn=_transient)

# --- ingest -----------------------------------------------------------------------------------------
fetch_source = step(acquire.resolve_source, "acquire-source", retries=2,
                    retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_condition_fn=_transient)
hash_source = step(movielens.content_hash, "hash-source-files")
warehouse_up_to_date = step(warehouse.up_to_date, "check-warehouse-up-to-date")
validate_source = step(movielens.read_sources, "validate-source-files")
write_lake = step(lake.write_snapshot, "write-lake-snapshot", "write-lake-{data_hash:.12}")
promote_lake = step(warehouse.publish_snapshot, "promote-lake-and-rebuild-warehouse", "rebuild-warehouse-{data_hash:.12}")

# --- train ------------------------------------------------------------------------------------------
model_config = step(training.pipeline_config, "resolve-model-config", "config-{kind}")
make_or_reuse_split = step(_split_logged, "split-ratings", "split-{spec.strategy}-seed{spec.seed}")
load_split = step(split.load, "load-stored-split", "load-split-{sid}")
set_current_split = step(split.set_current, "set-current-split", "current-split-{sid}")
find_trained = step(training.find_trained, "find-identical-training", "find-trained-{config.kind}")
train_and_evaluate = step(training.train_and_evaluate, "fit-and-evaluate", "fit-{config.kind}")
summarize_unregistered = step(training.summarize, "summarize-unregistered-training", "summary-{result.config.kind}")
record_training = step(training.record, "log-register-promote", "register-{result.config.kind}")
training_summary = step(report.training_summary,
                        "summarize-training", "summary-{kind}-v{version}")

# --- publish ----------------------------------------------------------------------------------------
load_champions = step(serving.load_champions, "load-champion-models", "load-{alias}-models", retries=2,
                      retry_delay_seconds=2, retry_condition_fn=_transient)
order_for_publication = step(serving.order_for_publication, "choose-serving-model", "serve-by-{metric}")
publication_up_to_date = step(warehouse.live_publication_matches, "check-publication-up-to-date")
score_shard = step(sharding.score_shard, "score-user-range", "score-users-{lo}-{hi}")
# No retries: scoring is not I/O, and a failed check must not be retried into a publish.
publish_tables = step(publishing.publish, "score-check-publish")

# --- serving fit (the evaluated config on every rating) --------------------------------------------
serving_kinds = step(serving.serving_kinds, "choose-kinds-to-serve", "kinds-to-serve-by-{metric}")
fit_serving = step(serving.fit_serving, "fit-on-all-ratings", "serving-fit-{kind}")
