"""The whole pipeline: ingest -> split (once) -> train both kinds concurrently -> register -> serving fit -> publish.

Evaluate, then serve: models are chosen on the split; then each champion the publication uses is
refitted on every rating (its own registered version under the `serving` alias) and published from.

Locally each model trains in-process (a task per kind, run side by side). Run as the `pipeline/daily`
deployment with `train_on="deployment"`, each model trains as a `train/gpu` deployment run on the
GPU work pool, and the pipeline waits for them. Unchanged data and configs skip work: the ingest is a
no-op, the split is reused, an identical training (and serving fit) is found in the registry, and a publication from
the same model versions and data is kept.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

import flows.prefect_home  # noqa: F401  (first: Prefect needs its home's parents to exist)
from prefect import flow, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from flows import guard, steps
from flows.artifacts import publish_run_artifacts
from flows.ingest import ingest
from flows.publish import publish
from flows.train import train
from tasks.core import contract as c
from tasks.stores import lake
from tasks.runs import report
from tasks.core import settings
from tasks.learning import kind_config
from tasks.core.settings import Paths
from tasks.stores.split_store import SplitSpec

TRAIN_DEPLOYMENT = "train/gpu"


@task(name="train-local", task_run_name="train-{kind}", cache_policy=NO_CACHE)
def train_local(kind: str, split_id: str, config: dict | None, paths: Paths, metric: str | None,
                force: bool, device: str | None) -> dict:
    """Train one kind in this process (a nested flow run, so it shows as its own run in the UI)."""
    return train(kind=kind, split=split_id, config=config, home=paths, promotion_metric=metric, force=force,
                 device=device)


@task(name="train-on-pool", task_run_name="train-{kind}-deployment", cache_policy=NO_CACHE)
def train_on_pool(kind: str, split_id: str, config: dict | None, paths: Paths, metric: str | None,
                  force: bool, device: str | None = None, timeout_s: float = 6 * 3600) -> dict:
    """Start the `train/gpu` deployment for one kind and wait; its outcome is read back from the registry.

    The run may go to a worker on another host, whose result is not stored anywhere this process can
    read: what it trained (or reused) is found through the MLflow tracking server by the id of the flow
    run started here, and its data hash must be this pipeline's, or the two read different data locations.
    The worker's run is an entry of its own: it uses its host's home, data location and device (the `gpu` pool
    sets $LENSFLOW_DEVICE), so neither `paths.home` nor `device` is sent (train_local's signature, for `runner`).
    """
    run = run_deployment(TRAIN_DEPLOYMENT, timeout=timeout_s, poll_interval=2, parameters={
        "kind": kind, "split": split_id, "config": config, "home": None, "promotion_metric": metric, "force": force})
    if not (run.state and run.state.is_completed()):
        raise RuntimeError(f"training deployment run {run.name} for {kind} ended {run.state.type if run.state else '?'}")
    summary = report.training_of_flow_run(paths, kind, str(run.id), flow_run_name=run.name)
    live = lake.current(paths)
    if live is not None and summary["data_hash"] != live.data_hash:
        raise RuntimeError(f"training deployment run {run.name} trained {kind} on data {summary['data_hash'][:12]}, "
                           f"but this pipeline's data location {paths.data_uri} holds {live.data_hash[:12]}: "
                           f"point the training worker's {settings.DATA_ENV} at the same location")
    return summary


def _run_name() -> str:
    """pipeline-<UTC date>-<split strategy>-<kinds>-<where it trains>: 'pipeline-2026-12-01-random-dot_bias+...'."""
    p = flow_run.parameters
    split = p.get("split") or {}
    strategy = split.get("strategy", "random") if isinstance(split, dict) else getattr(split, "strategy", "random")
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return f"pipeline-{day}-{strategy}-{'+'.join(p.get('kinds') or c.MODEL_KINDS)}-{p.get('train_on', 'local')}"


@flow(name="pipeline", flow_run_name=_run_name, log_prints=True)
@guard.one_writer   # one writer per data location (flows/guard.py)
def pipeline(source: str | None = None, home: Paths | str | None = None, split: SplitSpec = SplitSpec(),
             kinds: list[str] | None = None, dot_config: dict | None = None, nn_config: dict | None = None,
             promotion_metrics: dict[str, str] | None = None, n: int = 50, k: int = 20, retain: int = 5,
             train_on: Literal["local", "deployment"] = "local", force: bool = False,
             refuse_narrowing: bool = False, shards: int = 1, dask_address: str | None = None,
             device: str | None = None) -> dict:
    """Ingest, split, train and register both models, publish from the champions; returns a summary.

    Each kind is promoted on its own job's metric (tasks.learning.promotion) unless promotion_metrics names another
    for it ({"embedding_nn": "mae"}). shards, dask_address: publish's sharded scoring (flows/publish.py); a named
    Dask scheduler is reached at the run's entry, so a bad one fails before any work. device: where models train
    and score (None: CUDA when present; local training only, a `train/gpu` worker uses its own).
    """
    paths = home   # a Paths by now: resolved once, at this run's entry (flows/guard.py), with device and dask_address
    configs = kind_config.configs_by_kind(kinds, dot_config, nn_config)
    plans = {kind: kind_config.kind_settings(kind, overrides) for kind, overrides in configs.items()}
    metrics = promotion_metrics or {}
    progress = create_progress_artifact(0.0, key="pipeline-progress", description="pipeline steps done")

    # The split waits for the ingest's task run instead of taking the subflow's result as such: that makes a
    # `flow_run` task input, which Prefect's V1 UI cannot read (its Task Runs tab then lists none).
    ingest_run = ingest(source=source, home=paths, return_state=True)
    ingested = ingest_run.result()   # raises as the ingest failed
    steps.say(report.ingest_line(ingested))
    update_progress_artifact(progress, 20.0)

    stored_split = steps.split_for_trainings(paths, split, ingested[c.DATA_HASH], wait_for=[ingest_run])

    runner = train_on_pool if train_on == "deployment" else train_local
    futures = [runner.submit(kind, stored_split[c.SPLIT_ID], overrides, paths, metrics.get(kind), force, device)
               for kind, overrides in configs.items()]
    trained = [f.result() for f in futures]
    update_progress_artifact(progress, 65.0)

    served = []
    needed = steps.serving_kinds(paths, list(configs))
    if needed:
        snap = steps.lake_snapshot(paths)
        ratings, users, movies = (steps.read_table(paths, name) for name in (c.RATINGS, c.USERS, c.MOVIES))
        served = [steps.fit_serving(paths, kind, ratings, users, movies, snap.data_hash, device=device,
                                    serving_epochs=plans[kind].serving_epochs) for kind in needed]
    update_progress_artifact(progress, 80.0)

    published = publish(home=paths, kinds=list(configs), version=c.ALIAS_SERVING, n=n, k=k,
                        retain=retain, force=force, refuse_narrowing=refuse_narrowing, shards=shards,
                        dask_address=dask_address, expect_versions={fit["kind"]: fit["version"] for fit in served},
                        device=device)
    update_progress_artifact(progress, 100.0)

    summary = {"ingest": ingested, "split": stored_split, "models": trained, "serving": served, "publication": published,
               "warehouse": str(paths.warehouse)}
    publish_run_artifacts(summary)
    for line in report.run_lines(summary):
        steps.say(line)
    return summary

