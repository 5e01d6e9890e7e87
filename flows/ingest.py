"""Ingest flow: acquire -> hash -> validate -> lake snapshot -> warehouse rebuild (wiring only).

Run: `python -m flows.ingest --source PATH [--home DIR]` (no --source: $LENSFLOW_SOURCE or the
official GroupLens download, cached under <home>/raw). Identical content is a no-op.
"""

from __future__ import annotations

import argparse
import json
import os

from tasks.settings import apply_environment, paths as resolve_paths

if __name__ == "__main__":  # --home must move PREFECT_HOME before Prefect is imported
    _early = argparse.ArgumentParser(add_help=False)
    _early.add_argument("--home")
    _paths = apply_environment(_early.parse_known_args()[0].home)
    _paths.home.mkdir(parents=True, exist_ok=True)  # Prefect creates PREFECT_HOME but not its parents
    # The temporary Prefect server can take longer than the 20 s default on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from tasks import acquire, durable, lake, movielens, warehouse  # noqa: E402


def _transient(task_, task_run, state) -> bool:
    """Retry acquisition on network trouble only, never on bad input or a bad path (they stay bad)."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, acquire.TRANSIENT_ERRORS)


# Thin task wrappers; the plain functions live in tasks/. Only acquisition touches the network,
# so only it retries. DataFrames flow between tasks in memory and are never hashed or persisted.
acquire_task = task(name="acquire", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
                    retry_condition_fn=_transient, cache_policy=NO_CACHE)(acquire.resolve_source)
hash_task = task(name="content-hash", cache_policy=NO_CACHE)(movielens.content_hash)
up_to_date_task = task(name="up-to-date", cache_policy=NO_CACHE)(warehouse.up_to_date)
validate_task = task(name="validate", cache_policy=NO_CACHE, persist_result=False)(movielens.read_sources)
write_lake_task = task(name="write-lake", cache_policy=NO_CACHE, persist_result=False)(lake.write_snapshot)
publish_task = task(name="rebuild-warehouse", cache_policy=NO_CACHE)(warehouse.publish_snapshot)
sweep_task = task(name="sweep-leftovers", cache_policy=NO_CACHE, log_prints=True)(durable.sweep)


@flow(name="ingest")
def ingest(source: str | None = None, home: str | None = None) -> dict:
    """Ingest MovieLens files into the lake and warehouse; returns a summary (hash, counts, no-op, paths)."""
    paths = resolve_paths(home)
    sweep_task(paths)  # temporary files a killed run left behind (untouched for an hour)
    folder = acquire_task(source, paths)
    data_hash = hash_task(folder)
    noop = up_to_date_task(paths, data_hash)
    if not noop:
        tables = validate_task(folder)
        write_lake_task(paths, tables, data_hash, make_current=False)
        publish_task(paths, data_hash)
    snap = lake.snapshot(paths, data_hash)
    return {
        "data_hash": data_hash,
        "noop": noop,
        "row_counts": snap.row_counts,
        "encodings": snap.encodings,
        "source": str(folder),
        "lake_snapshot": str(snap.path),
        "warehouse": str(paths.warehouse),
        "build_id": warehouse.build_id(paths),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: run the ingest flow and print its summary as JSON."""
    ap = argparse.ArgumentParser(prog="python -m flows.ingest", description=ingest.__doc__)
    ap.add_argument("--source", help="folder with u.data etc., or a zip (default: $LENSFLOW_SOURCE or download)")
    ap.add_argument("--home", help="data home (default: $LENSFLOW_HOME or ./.lensflow)")
    a = ap.parse_args(argv)
    print(json.dumps(ingest(source=a.source, home=a.home), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
