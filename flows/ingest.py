"""Ingest flow: acquire -> hash -> validate -> lake snapshot -> warehouse rebuild (wiring only).

Run: `lensflow ingest --source PATH [--home DIR]` (no --source: $LENSFLOW_SOURCE or the official
GroupLens download, cached under <home>/raw). Identical content is a no-op.
"""

from __future__ import annotations

import flows.prefect_home  # noqa: F401  (first: Prefect needs its home's parents to exist)
from prefect import flow
from prefect.runtime import flow_run

from flows import guard, steps
from tasks.stores import lake
from tasks.runs import report
from tasks.stores import warehouse
from tasks.core.settings import Paths


def _run_name() -> str:
    return f"ingest-{steps.source_label(flow_run.parameters.get('source'))}"


@flow(name="ingest", flow_run_name=_run_name)
@guard.one_writer   # one writer per data location (flows/guard.py)
def ingest(source: str | None = None, home: Paths | str | None = None) -> dict:
    """Ingest MovieLens files into the lake and warehouse; returns a summary (hash, counts, no-op, paths)."""
    steps.name_parent_task_run()
    paths = home   # a Paths by now: resolved once, at this run's entry (flows/guard.py)
    steps.sweep(paths)  # temporary files a killed run left behind (untouched for an hour)
    folder = steps.fetch_source(source, paths)
    data_hash = steps.hash_source(folder)
    noop = steps.warehouse_up_to_date(paths, data_hash)
    if not noop:
        tables = steps.validate_source(folder)
        steps.write_lake(paths, tables, data_hash, make_current=False)
        steps.promote_lake(paths, data_hash)
    snap = lake.snapshot(paths, data_hash)
    summary = {
        "data_hash": data_hash,
        "noop": noop,
        "row_counts": snap.row_counts,
        "encodings": snap.encodings,
        "source": str(folder),
        "lake_snapshot": str(snap.path),
        "warehouse": str(paths.warehouse),
        "build_id": warehouse.build_id(paths),
    }
    steps.say(report.ingest_line(summary))
    return summary
