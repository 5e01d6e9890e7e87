"""Prefect artifacts that make a pipeline run readable in the UI (the content comes from tasks.report)."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks import publication_metrics as health
from tasks import report


def publish_health_artifact(published: dict) -> None:
    """The publication's own reach and bias against the previous live one, warnings first."""
    if published.get("skipped"):
        return
    text = health.summary_markdown(published["health"], published.get("previous_health"), [])
    warnings = published.get("warnings") or []
    head = ["# Publication health", "", f"publication `{published['publication_id']}`", ""]
    if warnings:
        head += ["**Narrowing flagged** against the previous live publication:", ""]
        head += [f"- {w}" for w in warnings] + [""]
    create_markdown_artifact("\n".join(head) + text, key="publication-health",
                             description="Reach and bias of the published tables, and narrowing warnings")


def publish_run_artifacts(summary: dict, tracking_uri: str) -> None:
    """A metrics table and a markdown summary on the current flow run."""
    create_table_artifact(report.metrics_table(summary["models"]), key="model-metrics",
                          description="Test and validation metrics of each model in this run")
    create_markdown_artifact(report.summary_markdown(summary, tracking_uri), key="pipeline-summary",
                             description="What this pipeline run did and why")
