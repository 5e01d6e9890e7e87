"""Publish flow: registry champions -> scored top-N and similar items -> checked snapshot -> DuckDB (wiring only).

Run: `lensflow publish [--model dot_bias] [--version champion|N]`.
"""

from __future__ import annotations

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from tasks import champions, durable, lake, sharding
from tasks import contract as c
from tasks import publish as pub
from tasks import train as training
from tasks.settings import paths as resolve_paths

# Loading models and lake tables is file I/O: it may retry. Scoring and checks never do.
load_task = task(name="load-models", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
                 persist_result=False)(champions.load_champions)
read_task = task(name="read-lake", task_run_name="read-{table_name}", retries=2, retry_delay_seconds=1,
                 cache_policy=NO_CACHE, persist_result=False)(lake.read)
order_task = task(name="choose-serving-model", cache_policy=NO_CACHE, persist_result=False)(
    champions.order_for_publication)
up_to_date_task = task(name="publication-up-to-date", cache_policy=NO_CACHE)(champions.live_publication_matches)
sweep_task = task(name="sweep-leftovers", cache_policy=NO_CACHE)(durable.sweep)
# One task per user range: with a DaskTaskRunner (prefect-dask) the shards run on the cluster's workers.
score_shard_task = task(name="score-shard", task_run_name="score-users-{lo}-{hi}", cache_policy=NO_CACHE,
                        persist_result=False)(sharding.score_shard)


@flow(name="publish", flow_run_name="publish-{version}", log_prints=True)
def publish(home: str | None = None, kinds: list[str] | None = None, version: str = c.ALIAS_CHAMPION,
            model: str | None = None, metric: str = training.PROMOTION_METRIC, n: int = 50, k: int = 20, retain: int = 5,
            force: bool = False, shards: int = 1) -> dict:
    """Publish from the registered models under `version` (alias or number); returns id, counts, lineage.

    shards > 1 scores users in that many id ranges as parallel tasks (on the flow's task runner).
    """
    paths = resolve_paths(home)
    sweep_task(paths)  # temporary files a killed run left behind (untouched for an hour)
    snap = lake.current(paths)
    if snap is None:
        raise FileNotFoundError(f"no live lake snapshot under {paths.lake}: run the ingest flow first")
    ordered = order_task(load_task(paths, list(kinds or c.MODEL_KINDS), version), metric, model)
    refs = [ref for _, ref, _ in ordered]
    models = [{"name": r.name, "version": r.version, "uri": r.uri, "run_id": r.run_id} for r in refs]
    live = None if force else up_to_date_task(paths, refs, snap.data_hash)
    if live:
        print(f"publication {live} already serves {', '.join(f'{r.name} v{r.version}' for r in refs)} "
              f"on data {snap.data_hash[:12]}: nothing to publish")
        return {"publication_id": live, "skipped": True, "models": models, "data_hash": snap.data_hash}
    ratings, movies, users = (read_task(paths, name) for name in (c.RATINGS, c.MOVIES, c.USERS))
    serving_metrics = ordered[0][2]
    scored = None
    if shards > 1:
        ranges = sharding.user_ranges(users[c.USER_ID], shards)
        kind = ordered[0][0].config.kind
        futures = score_shard_task.map(unmapped(paths), unmapped(kind), unmapped(refs[0].version), [lo for lo, _ in ranges],
                                       [hi for _, hi in ranges], unmapped(n))
        scored = sharding.combine([f.result() for f in futures])
    result = pub.publish_task(paths, [(rec, ref) for rec, ref, _ in ordered], ratings, movies, users,
                              n=n, k=k, retain=retain, split_id=refs[0].split_id, data_hash=snap.data_hash,
                              metrics=serving_metrics, scored=scored)
    return {"publication_id": result.publication_id, "skipped": False, "models": models,
            "data_hash": snap.data_hash, "split_id": refs[0].split_id,
            "recommendation_rows": result.recommendation_rows, "similar_item_rows": result.similar_item_rows,
            "rows_by_source": result.rows_by_source, "seconds": result.seconds, "snapshot": str(result.snapshot)}


if __name__ == "__main__":
    from flows.cli import main

    raise SystemExit(main(["publish"]))
