"""Publish flow: registry champions -> scored top-N and similar items -> checked snapshot -> DuckDB (wiring only).

Run: `lensflow publish [--model dot_bias] [--version serving|champion|N] [--shards N [--dask-address A]]`.
The default, `serving`, serves each champion's serving fit (its config refitted on every rating) where one
exists for the live data, else the champion itself. With shards > 1 the users the model has learnt are
scored in N user-id ranges by the `score-shards` subflow: on the Dask scheduler at `dask_address` (else
$LENSFLOW_DASK_ADDRESS, read at the run's entry), else on threads of this process; the other users once here.
"""

from __future__ import annotations

import pandas as pd
import flows.prefect_home  # noqa: F401  (first: Prefect needs its home's parents to exist)
from prefect import flow, unmapped
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows import guard, steps
from flows.artifacts import publish_health_artifact
from tasks.core import contract as c
from tasks.publishing import publish as publishing
from tasks.runs import report
from tasks.publishing import sharding
from tasks.core.errors import ConfigError, DataLocationBusy
from tasks.registry.model_ref import ServingModel
from tasks.core.settings import Paths


def _shards_run_name() -> str:
    """score-3-shards-on-dask / score-3-shards-on-threads."""
    p = flow_run.parameters
    return f"score-{len(p.get('lows') or [])}-shards-on-{'dask' if p.get('on_dask') else 'threads'}"


@flow(name="score-shards", flow_run_name=_shards_run_name, log_prints=True)
def score_shards(paths: Paths, kind: str, version: str, lows: list[int], highs: list[int], n: int,
                 data_hash: str | None = None, on_dask: bool = False,
                 new_items: list[int] | None = None, device: str | None = None) -> list[pd.DataFrame]:
    """One `score-user-range` task per (low, high) range, on this flow's task runner (set by the caller)."""
    steps.name_parent_task_run()
    futures = steps.score_shard.map(unmapped(paths), unmapped(kind), unmapped(version), lows, highs,
                                    unmapped(n), unmapped(data_hash), unmapped(new_items), unmapped(device))
    return [f.result() for f in futures]


def _score_sharded(paths: Paths, serving: ServingModel, ratings: pd.DataFrame, users: pd.DataFrame,
                   movies: pd.DataFrame, n: int, shards: int, address: str | None, data_hash: str,
                   device: str | None) -> pd.DataFrame:
    """Learnt users in `shards` ranges (Dask at `address`, else threads); the rest once here; combined."""
    known, cold = sharding.known_and_cold(serving.recommender, users[c.USER_ID])
    lows, highs = sharding.plan(known, shards)
    frames = []
    if lows:
        if address:
            from prefect_dask import DaskTaskRunner

            runner = DaskTaskRunner(address=address)
        else:  # one host: torch already uses every core per shard; threads start at once, share the memory
            runner = ThreadPoolTaskRunner(max_workers=len(lows))
        frames = score_shards.with_options(task_runner=runner)(
            paths, serving.kind, serving.ref.version, lows, highs, n, data_hash, on_dask=bool(address),
            new_items=sharding.new_items(movies, ratings),
            device=None if address else device)   # a Dask worker's host picks its own (None: CUDA when present)
    frames.append(steps.score_cold(serving.recommender, ratings, users, cold, n))
    return sharding.combine(frames)


def _check_expected(models: list[ServingModel], expect: dict[str, str] | None) -> None:
    """What this run fitted is what it publishes: else refused (exit 6), nothing published."""
    for m in models:
        want = (expect or {}).get(m.kind)
        if want is not None and str(m.ref.version) != str(want):
            raise DataLocationBusy(f"the registry changed under this run: it fitted {m.ref.name} v{want} for serving, "
                                   f"but `{c.ALIAS_SERVING}` now gives v{m.ref.version} (another writer on "
                                   f"{m.ref.name}?); nothing published, run again")


@flow(name="publish", flow_run_name="publish-{version}", log_prints=True)
@guard.one_writer   # one writer per data location (flows/guard.py)
def publish(home: Paths | str | None = None, kinds: list[str] | None = None, version: str = c.ALIAS_SERVING,
            model: str | None = None, n: int = 50, k: int = 20, retain: int = 5,
            force: bool = False, shards: int = 1, refuse_narrowing: bool = False,
            dask_address: str | None = None, expect_versions: dict[str, str] | None = None,
            device: str | None = None) -> dict:
    """Publish from the registered models under `version` (alias or number); returns id, counts, lineage.

    The ranking model (`model`'s kind if given) orders the lists; the rating model's champion fills
    predicted_rating (null, and said so, when there is none); similar items come from the dot model.
    shards > 1 scores the learnt users in that many id ranges as parallel tasks, each reading only its
    users' rows: on the Dask scheduler at dask_address (else $LENSFLOW_DASK_ADDRESS; reached at the run's entry,
    so a bad one fails before anything is read), else on threads here. device: where models score (None: CUDA
    when present, else CPU; $LENSFLOW_DEVICE at the run's entry).
    refuse_narrowing: a publication whose reach drops or concentration rises past the thresholds
    (docs/publication_health.md) is refused and the live one stays; otherwise it is published and flagged.
    expect_versions: {kind: version} this run fitted for serving (the pipeline's); a kind served by another version
    is refused before anything is scored (the registry changed under the run).
    """
    steps.name_parent_task_run()
    if shards < 1:
        raise ConfigError(f"shards must be a whole number >= 1, got {shards!r}")
    paths = home   # a Paths by now: resolved once, at this run's entry (flows/guard.py), with device and dask_address
    steps.sweep(paths)  # temporary files a killed run left behind (untouched for an hour)
    snap = steps.lake_snapshot(paths)
    if snap is None:
        raise FileNotFoundError(f"no live lake snapshot under {paths.lake}: run the ingest flow first")
    roles = steps.choose_roles(steps.load_champions(paths, list(kinds or c.MODEL_KINDS), version, device=device,
                                                    data_hash=snap.data_hash), model)
    models = roles.models
    _check_expected(models, expect_versions)
    if roles.ranking.alias == c.ALIAS_CANDIDATE and version == c.ALIAS_SERVING:
        print(f"no champion: no version beats its floor; publishing the lists from candidate "
              f"{roles.ranking.ref.name} v{roles.ranking.ref.version} (publication marked "
              f"{c.SERVED_ALIAS}={c.ALIAS_CANDIDATE})")
    if roles.rating is None:
        print(f"{c.PREDICTED_RATING} left null: {roles.no_rating}")
    live = None if force else steps.publication_up_to_date(paths, [m.ref for m in models], snap.data_hash)
    if live:
        print(f"publication {live} already serves {', '.join(f'{m.ref.name} v{m.ref.version}' for m in models)} "
              f"on data {snap.data_hash[:12]}: nothing to publish")
        return publishing.summary(roles, snap.data_hash, kept=live)
    ratings, movies, users = (steps.read_table(paths, name) for name in (c.RATINGS, c.MOVIES, c.USERS))
    scored = None
    if shards > 1:
        scored = _score_sharded(paths, roles.ranking, ratings, users, movies, n, shards, dask_address,
                                snap.data_hash, device)
    result = steps.publish(paths, roles, ratings, movies, users, n=n, k=k, retain=retain,
                           split_id=roles.ranking.ref.split_id, data_hash=snap.data_hash, device=device,
                           scored=scored, refuse_narrowing=refuse_narrowing)
    for warning in result.warnings:
        print(f"narrowing flagged: {warning.message}")
    summary = publishing.summary(roles, snap.data_hash, result)
    steps.say(report.publication_line(summary))
    publish_health_artifact(summary)
    return summary
