"""Training flow: live lake tables -> stored split (reused by id) -> fit -> evaluate -> MLflow (wiring only).

Run: `lensflow train --kind dot_bias --split random [--config JSON] [--split-id ID] [--no-registry]`.
"""

from __future__ import annotations

import flows.prefect_home  # noqa: F401  (first: Prefect needs its home's parents to exist)
from prefect import flow
from prefect.runtime import flow_run

from flows import guard, steps
from flows.artifacts import training_artifacts
from tasks.core import contract as c
from tasks.learning import kind_config
from tasks.core.errors import ConfigError
from tasks.learning import promotion
from tasks.core.settings import Paths
from tasks.stores.split_store import SplitSpec


def _run_name() -> str:
    """train-<kind>-<loss>: 'train-dot_bias-softmax' (the loss of the kind's config)."""
    p = flow_run.parameters
    kind = p.get("kind") or c.MODEL_KIND_DOT
    try:
        return f"train-{kind}-{kind_config.model_config(kind, p.get('config')).loss.name}"
    except ConfigError:  # the flow itself refuses the config; the name must not fail first
        return f"train-{kind}"


def _flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


@flow(name="train", flow_run_name=_run_name)
@guard.one_writer   # one writer per data location (flows/guard.py)
def train(kind: str = c.MODEL_KIND_DOT, split: SplitSpec | str = SplitSpec(), config: dict | None = None,
          home: Paths | str | None = None, k: int = 10, promotion_metric: str | None = None,
          force: bool = False, to_registry: bool = True, device: str | None = None) -> dict:
    """Train, evaluate and register one model kind on a split (a SplitSpec, or the id of a stored split).

    config: the kind's settings as flat JSON (models.config, plus eval_users); promotion_metric: what promotion
    compares, the kind's job metric by default (tasks.learning.promotion: ndcg_at_10 for dot_bias, rmse for embedding_nn).
    An identical earlier training (same config, split, data and code) is reused from the registry
    unless `force`; `to_registry=False` trains and evaluates only. device: cpu, cuda, cuda:N or None (CUDA when
    present); the `gpu` work pool's runs take $LENSFLOW_DEVICE. Returns a JSON-friendly summary.
    The version is findable by this flow run's id (`registry.training_of_flow_run`): its MLflow run
    carries the id when it trained, the reused version a `prefect.reused_by.<id>` tag when it reused.
    """
    steps.name_parent_task_run()
    paths = home   # a Paths by now: resolved once, at this run's entry (flows/guard.py)
    snap = steps.lake_snapshot(paths)
    if snap is None:
        raise FileNotFoundError(f"no live lake snapshot under {paths.lake}: run the ingest flow first, or point "
                                f"this worker's LENSFLOW_DATA_URI at the data location the ingest wrote")
    plan = steps.kind_settings(kind, config)
    cfg = plan.config
    metric = promotion.promotion_metric(cfg, promotion_metric, k)
    if isinstance(split, str):
        chosen = steps.load_split(paths, split)
    else:
        chosen = steps.make_or_reuse_split(paths, steps.read_table(paths, c.RATINGS), split, snap.data_hash)
    done = steps.find_trained(paths, cfg, chosen.split_id, chosen.data_hash) if to_registry and not force else None
    if done is not None:
        steps.set_current_split(paths, chosen.split_id)
        steps.mark_reused(paths, kind, done.version)   # how a pipeline on another host learns what was reused
        summary = {**steps.training_summary(paths, kind, done.version, reused=True, flow_run_name=flow_run.get_name()),
                   "split_reused": chosen.reused, "flow_run_id": _flow_run_id()}
        training_artifacts(summary)
        return summary
    users, movies = steps.read_table(paths, c.USERS), steps.read_table(paths, c.MOVIES)
    result = steps.train_and_evaluate(chosen, plan, users, movies, k=k, device=device)
    steps.set_current_split(paths, chosen.split_id)
    if not to_registry:
        summary = steps.summarize_unregistered(result)
        training_artifacts(summary)
        return summary
    recorded = steps.record_training(paths, result, chosen, movies, metric, k)
    summary = {**steps.training_summary(paths, kind, recorded.version, reused=False, seconds=result.seconds,
                                        flow_run_name=flow_run.get_name()), "split_reused": chosen.reused,
               "flow_run_id": _flow_run_id()}
    training_artifacts(summary)
    return summary
