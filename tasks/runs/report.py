"""Run summaries: what a training produced (read back from the registry), and the tables and markdown
that flows/artifacts.py shows in the Prefect UI.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from tasks.core import contract as c
from tasks.learning import promotion
from tasks.registry import versions as registry
from tasks.registry import promote
from tasks.registry import tracking as t
from tasks.registry import mlflow_store
from tasks.core.errors import NotFound
from tasks.core.settings import Paths

SHOWN_METRICS = ("ndcg_at_10", "recall_at_10", "precision_at_10", "map_at_10", "hit_rate_at_10",
                 "coverage_at_10", "gini_at_10", "rmse", "mae")
# What a run summary shows of each kind: its own job's metrics (the ranking model's scores are no ratings).
JOB_METRICS = {c.MODEL_KIND_DOT: ("ndcg_at_10", "recall_at_10", "coverage_at_10"), c.MODEL_KIND_NN: ("rmse", "mae")}
REUSED = "reused"
METRIC, FLOOR = "metric", "floor (same data)"   # first and last column of metrics_table


def job_metrics(kind: str) -> tuple[str, ...]:
    """The metrics of a kind's own job, in the order a summary shows them."""
    return JOB_METRICS.get(kind, SHOWN_METRICS)


def floor_of(metrics: dict, key: str) -> tuple[float | None, str]:
    """(the floor's value of run metric `key`, the floor's name) as logged on a run, or (None, "")."""
    name = promotion.floor_name(key)   # a rating metric's floor is the bias baseline, a ranking metric's popularity
    if t.floor_metric(name, key) in metrics:
        return metrics[t.floor_metric(name, key)], promotion.FLOOR_NAMES[name]
    return None, ""


def training_summary(paths: Paths, kind: str, version: str, *, reused: bool, seconds: float | None = None,
                     flow_run_name: str | None = None) -> dict:
    """One trained (or reused) model version: lineage, metrics, and the promotion decision on it.

    A reused version's decision reads `reused` and its reason names the run that decided it, so an
    old "no champion yet" is never shown as news; `promotion_decision`/`promotion_reason` keep the record.
    """
    ref = registry.resolve(paths, kind, str(version))
    cl = mlflow_store.client(paths)
    mv = cl.get_model_version(ref.name, ref.version)
    run = cl.get_run(ref.run_id)
    metrics = {k: v for k, v in run.data.metrics.items() if v is not None and math.isfinite(v)}
    champion = registry.champion_version(paths, kind)
    decision, reason = mv.tags.get(registry.TAG_DECISION, ""), mv.tags.get(promote.TAG_REASON, "")
    decided_in = run.data.tags.get(t.TAG_FLOW_RUN_NAME) or run.info.run_name or ref.run_id
    if run.info.start_time:
        started = datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc)
        decided_in += f" of {started:%Y-%m-%d %H:%M} UTC"
    shown_decision, shown_reason = decision, reason
    if reused:
        shown_decision = REUSED
        shown_reason = (f"decided in run {decided_in}: {decision or 'undecided'}; an identical training (same "
                        f"config, split, data and code) was already registered; champion now "
                        f"{'v' + champion if champion else 'none'}")
    return {
        "kind": kind, "model_name": ref.name, "version": ref.version, "run_id": ref.run_id,
        "uri": ref.uri, "split_id": ref.split_id, "data_hash": ref.data_hash, "reused": reused,
        "decision": shown_decision, "reason": shown_reason,
        "promotion_decision": decision, "promotion_reason": reason, "decided_in": decided_in,
        "promotion_metric": mv.tags.get(promote.TAG_METRIC, ""), "loss": run.data.params.get("loss", ""),
        "champion_version": champion, "device": run.data.tags.get(t.TAG_DEVICE, ""),
        "train_seconds": seconds if seconds is not None else _float(run.data.tags.get(t.TAG_TRAIN_SECONDS)),
        "metrics": metrics, "flow_run": flow_run_name, "mlflow_run_name": run.info.run_name,
        "mlflow_url": mlflow_store.run_url(paths.mlflow_tracking_uri, run.info.experiment_id, ref.run_id),
        "version_url": mlflow_store.version_url(paths.mlflow_tracking_uri, ref.name, ref.version),
    }


def training_of_flow_run(paths: Paths, kind: str, flow_run_id: str, flow_run_name: str | None = None) -> dict:
    """Summary of what the training flow run `flow_run_id` left for `kind`: the version it trained or reused.

    Read back from the registry by the flow run's id (`registry.training_of_flow_run`), so it holds
    whichever host trained and however many pipelines run at once. NotFound when the run left nothing
    in this tracking store: the training's worker then talks to another MLflow store than this process.
    """
    found = registry.training_of_flow_run(paths, kind, str(flow_run_id))
    if found is None:
        raise NotFound(f"training flow run {flow_run_name or flow_run_id} ({flow_run_id}) completed but left no "
                       f"{kind} run or version in MLflow store {paths.mlflow_tracking_uri}: point every worker's "
                       f"{mlflow_store.ENV_TRACKING_URI} at the same tracking server")
    ref, reused = found
    return {**training_summary(paths, kind, ref.version, reused=reused, flow_run_name=flow_run_name),
            "flow_run_id": str(flow_run_id)}


def _float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def run_link(m: dict) -> str:
    """The model's MLflow run as a markdown link to its page in the MLflow UI."""
    return f"[{m.get('mlflow_run_name') or m['run_id'][:8]}]({m['mlflow_url']})" if m.get("mlflow_url") else \
        f"`{m['run_id'][:8]}`"


def version_link(m: dict) -> str:
    """The registered version as a markdown link to its page in the MLflow UI ('lensflow-dot_bias v3')."""
    return f"[{model_label(m)}]({m['version_url']})" if m.get("version_url") else model_label(m)


def model_label(m: dict) -> str:
    """'lensflow-dot_bias v3' (or the kind of an unregistered training): a model's column in metrics_table."""
    return f"{m.get('model_name') or m['kind']} v{m['version']}" if m.get("version") else m.get("kind", "?")


def _promotion_key(m: dict) -> str:
    """The metric promotion compared for one model, as logged: valid_ndcg_at_10 (test_... without a valid part)."""
    key = mlflow_store.metric_key(m.get("promotion_metric") or promotion.PROMOTION_METRICS.get(m.get("kind"), "ndcg_at_10"))
    return key if key.startswith(promote.SPLIT_PREFIXES) else f"valid_{key}"


def metrics_table(models: list[dict]) -> list[dict]:
    """Rows for the Prefect table artifact: metrics as rows, models as columns, each model's promotion metric
    first (the ranking model's NDCG, the rating model's RMSE), a model's cell empty where the metric is not its own.

    The last column is the floor on the same data (plain popularity for ranking metrics, the bias baseline for
    rating metrics; logged on the runs as promotion_floor/popularity_valid_<metric>,
    promotion_floor/bias_baseline_valid_<metric>); after the metrics come training time, decision and device.
    """
    firsts = list(dict.fromkeys(_promotion_key(m) for m in models))
    keys = [*firsts, *(f"test_{k.split('_', 1)[1]}" for k in firsts)]
    keys += [k for name in SHOWN_METRICS for k in (f"test_{name}", f"valid_{name}") if k not in keys]
    labels = [model_label(m) for m in models]
    rows = []
    for key in keys:
        values = [m["metrics"].get(key) for m in models]
        if all(v is None for v in values):
            continue
        row = {METRIC: f"{key} (promotion)" if key in firsts else key}
        row.update({label: _round(v) for label, v in zip(labels, values)})
        floors = [floor_of(m["metrics"], key) for m in models]
        value, name = next(((v, n) for v, n in floors if v is not None), (None, ""))
        row[FLOOR] = f"{_round(value)} ({name})" if value is not None else "-"
        rows.append(row)
    for name, get in (("training time (s)", lambda m: _round(m.get("train_seconds"), 1)),
                      ("decision", lambda m: m.get("decision") or "-"),
                      ("device", lambda m: m.get("device") or "-")):
        rows.append({METRIC: name, **{label: get(m) for label, m in zip(labels, models)}, FLOOR: "-"})
    return rows


def _round(value, digits: int = 4):
    return "-" if value is None or not math.isfinite(float(value)) else round(float(value), digits)


def training_line(m: dict) -> str:
    """One log line on a trained or reused version: the decision and why, the metric, the MLflow run."""
    key = _promotion_key(m)
    value, (floor, floor_name) = m["metrics"].get(key), floor_of(m["metrics"], key)
    reason = m["reason"] or "-"
    # the metric and its floor once: a reason that already names them is not followed by them again
    shown = [f"{key} {value:.4f}" if value is not None else f"no {key}"] if key not in reason else []
    if floor is not None and floor_name not in reason:
        floor_text = f"{floor_name} {floor:.4f}"
        shown = [f"{shown[0]} ({floor_text})"] if shown else [floor_text]
    if m.get("train_seconds") is not None:
        shown.append(f"trained in {m['train_seconds']:.1f} s")
    return (f"{model_label(m)}: {m['decision'] or 'undecided'} — {reason}; {', '.join(shown) + '; ' if shown else ''}"
            f"MLflow run {m['mlflow_run_name']} {m['mlflow_url']}")


def ingest_line(summary: dict) -> str:
    """One log line on an ingest: the data hash, whether it was new, the rows of each table."""
    rows = ", ".join(f"{k} {v:,}" for k, v in summary["row_counts"].items())
    if summary["noop"]:
        return f"data {summary['data_hash'][:12]} unchanged: ingest skipped (live: {rows})"
    return f"ingested data {summary['data_hash'][:12]} from {summary['source']}: {rows}; warehouse rebuilt"


def publication_line(published: dict) -> str:
    """One log line on a publish: the publication id, its rows by source, the models it came from."""
    served = ", ".join(f"{m['name']} v{m['version']}" for m in published["models"])
    if published.get("skipped"):
        return f"publication {published['publication_id']} already serves {served} on this data: kept"
    by_source = ", ".join(f"{k} {v:,}" for k, v in published["rows_by_source"].items())
    return (f"published {published['publication_id']}: {published['recommendation_rows']:,} recommendations "
            f"({by_source}) and {published['similar_item_rows']:,} similar items from {served}")


def roles_lines(published: dict) -> list[str]:
    """What each served model does in a publication, and why predicted_rating is null when it is."""
    lines = [f"{' and '.join(m['jobs'])} from {m['name']} v{m['version']}" for m in published.get("models") or []
             if m.get("jobs")]
    if published.get("no_rating"):
        lines.append(f"{c.PREDICTED_RATING} is null in this publication: {published['no_rating']}")
    return lines


def run_lines(summary: dict) -> list[str]:
    """A pipeline run in a few closing log lines: each model's decision, the publication and who did what
    (the ingest is logged when it happens)."""
    return [*(training_line(m) for m in summary["models"]),
            publication_line(summary["publication"]), *roles_lines(summary["publication"])]


def training_markdown(m: dict) -> str:
    """A standalone training in a page: the version, the decision and why, lineage and the MLflow run."""
    seconds = m.get("train_seconds")
    lines = [f"# lensflow training: {version_link(m)}", "",
             f"- **decision**: {m.get('decision') or '-'} — {m.get('reason') or '-'}",
             f"- **split**: `{m.get('split_id') or '-'}` on data `{(m.get('data_hash') or '-')[:16]}`",
             f"- **trained** on {m.get('device') or '-'}" + (f" in {seconds:.1f} s" if seconds is not None else "")]
    if m.get("run_id"):
        lines.append(f"- **MLflow run**: {run_link(m)}")
    return "\n".join(lines)


def summary_markdown(summary: dict) -> str:
    """The run in a page: data, split, models and why the champion is the champion, publication."""
    ing, pubd = summary["ingest"], summary["publication"]
    lines = ["# lensflow pipeline run", "",
             f"- **data hash**: `{ing['data_hash'][:16]}` ({'unchanged, ingest skipped' if ing['noop'] else 'ingested'});"
             f" rows: " + ", ".join(f"{k} {v:,}" for k, v in ing["row_counts"].items()),
             f"- **split**: `{pubd.get('split_id') or (summary['models'][0]['split_id'] if summary['models'] else '-')}`",
             "", "## Models", "",
             "| model | version | reused | decision | why | MLflow run |", "| --- | --- | --- | --- | --- | --- |"]
    for m in summary["models"]:
        lines.append(f"| {m['model_name']} | {version_link(m)} | {'yes' if m['reused'] else 'no'} | "
                     f"{m['decision'] or '-'} | {m['reason'] or '-'} | {run_link(m)} |")
    lines += ["", "## Publication", ""]
    if pubd.get("skipped"):
        lines.append(f"Publication `{pubd['publication_id']}` already serves these models on this data: kept.")
    else:
        lines.append(f"- **id**: `{pubd['publication_id']}`")
        lines.append(f"- **rows**: {pubd['recommendation_rows']:,} recommendations "
                     f"({', '.join(f'{k}: {v:,}' for k, v in pubd['rows_by_source'].items())}), "
                     f"{pubd['similar_item_rows']:,} similar items")
    lines += [f"- **serving**: {line}" for line in roles_lines(pubd)]
    lines += [f"- **warehouse**: `{summary['warehouse']}`"]
    return "\n".join(lines)
