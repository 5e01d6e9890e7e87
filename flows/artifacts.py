"""Prefect artifacts that make a pipeline run readable in the UI (the content comes from tasks.runs.report)."""

from __future__ import annotations

import flows.prefect_home  # noqa: F401  (first: Prefect needs its home's parents to exist)
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.publishing import narrowing
from tasks.runs import report


def publish_health_artifact(published: dict) -> None:
    """The publication's own reach and bias against the previous live one, warnings first."""
    if published.get("skipped"):
        return
    text = narrowing.summary_markdown(published["health"], published.get("previous_health"), [])
    warnings = published.get("warnings") or []
    head = ["# Publication health", "", f"publication `{published['publication_id']}`", ""]
    if warnings:
        head += ["**Narrowing flagged** against the previous live publication:", ""]
        head += [f"- {w}" for w in warnings] + [""]
    create_markdown_artifact("\n".join(head) + text, key="publication-health",
                             description="Reach and bias of the published tables, and narrowing warnings")


METRICS_DESCRIPTION = ("Metrics (rows) of each model (columns), each kind's promotion metric first (ranking: NDCG, "
                       "rating: RMSE), beside its floor on the same data (popularity, bias baseline); then "
                       "training time, decision and device")


def publish_run_artifacts(summary: dict) -> None:
    """A metrics table and a markdown summary (linking each model's MLflow run and version) on the current flow run."""
    create_table_artifact(report.metrics_table(summary["models"]), key="model-metrics",
                          description=METRICS_DESCRIPTION)
    create_markdown_artifact(report.summary_markdown(summary), key="pipeline-summary",
                             description="What this pipeline run did and why")


def training_artifacts(summary: dict) -> None:
    """The same metrics table for one training (a train flow run), and its decision and lineage."""
    key = f"training-{summary['kind']}".replace("_", "-")  # artifact keys: lowercase, digits and dashes
    create_table_artifact(report.metrics_table([summary]), key=f"{key}-metrics",
                          description=METRICS_DESCRIPTION)
    create_markdown_artifact(report.training_markdown(summary), key=f"{key}-summary",
                             description="What this training did and why")
