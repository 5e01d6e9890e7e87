"""Run summaries: what a training produced (read back from the registry), and the tables and markdown
that flows/artifacts.py shows in the Prefect UI.
"""

from __future__ import annotations

import math

from tasks import contract as c
from tasks import registry
from tasks import tracking as t
from tasks.settings import Paths

SHOWN_METRICS = ("rmse", "mae", "ndcg_at_10", "recall_at_10", "precision_at_10", "map_at_10",
                 "hit_rate_at_10", "coverage_at_10", "gini_at_10")


def training_summary(paths: Paths, kind: str, version: str, *, reused: bool, seconds: float | None = None,
                     flow_run_name: str | None = None) -> dict:
    """One trained (or reused) model version: lineage, metrics, and the promotion decision on it."""
    ref = registry.resolve(paths, kind, str(version))
    cl = t.client(paths)
    mv = cl.get_model_version(ref.name, ref.version)
    run = cl.get_run(ref.run_id)
    metrics = {k: v for k, v in run.data.metrics.items() if v is not None and math.isfinite(v)}
    champion = registry.champion_version(paths, kind)
    return {
        "kind": kind, "model_name": ref.name, "version": ref.version, "run_id": ref.run_id,
        "uri": ref.uri, "split_id": ref.split_id, "data_hash": ref.data_hash, "reused": reused,
        "decision": mv.tags.get(registry.TAG_DECISION, ""), "reason": mv.tags.get(registry.TAG_REASON, ""),
        "champion_version": champion, "device": run.data.tags.get(t.TAG_DEVICE, ""),
        "train_seconds": seconds if seconds is not None else _float(run.data.tags.get(t.TAG_TRAIN_SECONDS)),
        "metrics": metrics, "flow_run": flow_run_name,
    }


def latest_training(paths: Paths, kind: str, flow_run_name: str | None = None) -> dict:
    """Summary of the newest `candidate` version of a kind (what a training deployment run just left)."""
    ref = registry.resolve(paths, kind, c.ALIAS_CANDIDATE)
    return training_summary(paths, kind, ref.version, reused=False, flow_run_name=flow_run_name)


def _float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def run_link(run_id: str, tracking_uri: str) -> str:
    """A clickable MLflow UI link when the store is a server, else how to open it."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"[{run_id[:8]}]({tracking_uri.rstrip('/')}/#/runs/{run_id})"
    return f"`{run_id[:8]}` (open with `lensflow mlflow-ui`)"


def metrics_table(models: list[dict]) -> list[dict]:
    """Rows for the Prefect table artifact: one per model, test and validation metrics side by side."""
    rows = []
    for m in models:
        row = {"model": m["model_name"], "version": m["version"], "decision": m["decision"] or "-",
               "reused": m["reused"], "device": m["device"]}
        for key in SHOWN_METRICS:
            for prefix in ("test_", "valid_"):
                value = m["metrics"].get(prefix + key)
                if value is not None:
                    row[prefix + key] = round(value, 4)
        rows.append(row)
    return rows


def summary_markdown(summary: dict, tracking_uri: str) -> str:
    """The run in a page: data, split, models and why the champion is the champion, publication."""
    ing, pubd = summary["ingest"], summary["publication"]
    lines = ["# lensflow pipeline run", "",
             f"- **data hash**: `{ing['data_hash'][:16]}` ({'unchanged, ingest skipped' if ing['noop'] else 'ingested'});"
             f" rows: " + ", ".join(f"{k} {v:,}" for k, v in ing["row_counts"].items()),
             f"- **split**: `{pubd.get('split_id') or (summary['models'][0]['split_id'] if summary['models'] else '-')}`",
             "", "## Models", "",
             "| model | version | reused | decision | why | MLflow run |", "| --- | --- | --- | --- | --- | --- |"]
    for m in summary["models"]:
        lines.append(f"| {m['model_name']} | {m['version']} | {'yes' if m['reused'] else 'no'} | "
                     f"{m['decision'] or '-'} | {m['reason'] or '-'} | {run_link(m['run_id'], tracking_uri)} |")
    lines += ["", "## Publication", ""]
    if pubd.get("skipped"):
        lines.append(f"Publication `{pubd['publication_id']}` already serves these models on this data: kept.")
    else:
        lines.append(f"- **id**: `{pubd['publication_id']}`")
        lines.append(f"- **rows**: {pubd['recommendation_rows']:,} recommendations "
                     f"({', '.join(f'{k}: {v:,}' for k, v in pubd['rows_by_source'].items())}), "
                     f"{pubd['similar_item_rows']:,} similar items")
    served = ", ".join(f"{m['name']} v{m['version']}" for m in pubd["models"])
    lines += [f"- **serving**: {served} (first: recommendations; similar items from the dot-bias embeddings "
              "when available)", f"- **warehouse**: `{summary['warehouse']}`"]
    return "\n".join(lines)
