"""Publish flow: registry champions -> scored top-N and similar items -> checked snapshot -> DuckDB (wiring only).

Run: `lensflow publish [--model dot_bias] [--version serving|champion|N]`. The default, `serving`,
serves each champion's serving fit (its config refitted on every rating) where one exists for the live
data, else the champion itself.
"""

from __future__ import annotations

from prefect import flow, unmapped

from flows import steps
from flows.artifacts import publish_health_artifact
from tasks import contract as c
from tasks import publish as publishing
from tasks import report, sharding
from tasks.evaluate import PROMOTION_METRIC
from tasks.settings import paths as resolve_paths


@flow(name="publish", flow_run_name="publish-{version}", log_prints=True)
def publish(home: str | None = None, kinds: list[str] | None = None, version: str = c.ALIAS_SERVING,
            model: str | None = None, metric: str = PROMOTION_METRIC, n: int = 50, k: int = 20, retain: int = 5,
            force: bool = False, shards: int = 1, refuse_narrowing: bool = False) -> dict:
    """Publish from the registered models under `version` (alias or number); returns id, counts, lineage.

    shards > 1 scores users in that many id ranges as parallel tasks (on the flow's task runner).
    refuse_narrowing: a publication whose reach drops or concentration rises past the thresholds
    (docs/publication_health.md) is refused and the live one stays; otherwise it is published and flagged.
    """
    steps.name_parent_task_run()
    paths = resolve_paths(home)
    steps.sweep(paths)  # temporary files a killed run left behind (untouched for an hour)
    snap = steps.lake_snapshot(paths)
    if snap is None:
        raise FileNotFoundError(f"no live lake snapshot under {paths.lake}: run the ingest flow first")
    models = steps.order_for_publication(steps.load_champions(paths, list(kinds or c.MODEL_KINDS), version,
                                                              data_hash=snap.data_hash), metric, model)
    if models[0].alias == c.ALIAS_CANDIDATE and version == c.ALIAS_SERVING:
        print(f"no champion: no version beats the popularity floor; publishing from candidates "
              f"{', '.join(f'{m.ref.name} v{m.ref.version}' for m in models)} (publication marked "
              f"{c.SERVED_ALIAS}={c.ALIAS_CANDIDATE})")
    live = None if force else steps.publication_up_to_date(paths, [m.ref for m in models], snap.data_hash)
    if live:
        print(f"publication {live} already serves {', '.join(f'{m.ref.name} v{m.ref.version}' for m in models)} "
              f"on data {snap.data_hash[:12]}: nothing to publish")
        return publishing.summary(models, snap.data_hash, kept=live)
    ratings, movies, users = (steps.read_table(paths, name) for name in (c.RATINGS, c.MOVIES, c.USERS))
    lows, highs = sharding.plan(users[c.USER_ID], shards)
    scored = None
    if lows:
        serving = models[0]
        futures = steps.score_shard.map(unmapped(paths), unmapped(serving.kind), unmapped(serving.ref.version),
                                        lows, highs, unmapped(n))
        scored = sharding.combine([f.result() for f in futures])
    result = steps.publish_tables(paths, models, ratings, movies, users, n=n, k=k, retain=retain,
                                  split_id=models[0].ref.split_id, data_hash=snap.data_hash, scored=scored,
                                  refuse_narrowing=refuse_narrowing)
    for warning in result.warnings:
        print(f"narrowing flagged: {warning.message}")
    summary = publishing.summary(models, snap.data_hash, result)
    steps.say(report.publication_line(summary))
    publish_health_artifact(summary)
    return summary
