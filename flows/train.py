"""Training flow: live lake tables -> stored split (reused by id) -> fit -> evaluate -> MLflow (wiring only).

Run: `python -m flows.train --kind dot_bias --strategy random [--set epochs=3] [--home DIR]`
(`--split-id ID` trains on a stored split instead; `--no-registry` skips MLflow; `--force` retrains
even when an identical training is registered). Prints the summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import os

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks import contract as c
from tasks import lake, report
from tasks import split as splits
from tasks import train as training
from tasks.settings import paths as resolve_paths
from tasks.split import SplitSpec

# Reading the lake is file I/O, so it may retry; everything else here is compute and does not.
snapshot_task = task(name="lake-snapshot", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)(lake.current)
read_table_task = task(name="read-lake", task_run_name="read-{table_name}", retries=2, retry_delay_seconds=1,
                       cache_policy=NO_CACHE, persist_result=False)(lake.read)


summary_task = task(name="training-summary", task_run_name="summary-{kind}-v{version}",
                    cache_policy=NO_CACHE)(report.training_summary)


@flow(name="train", flow_run_name="train-{kind}")
def train(kind: str = c.MODEL_KIND_DOT, split: SplitSpec | str = SplitSpec(), config: dict | None = None,
          home: str | None = None, k: int = 10, promotion_metric: str = training.PROMOTION_METRIC,
          force: bool = False, to_registry: bool = True) -> dict:
    """Train, evaluate and register one model kind on a split (a SplitSpec, or the id of a stored split).

    An identical earlier training (same config, split, data and code) is reused from the registry
    unless `force`; `to_registry=False` trains and evaluates only. Returns a JSON-friendly summary.
    """
    paths = resolve_paths(home)
    snap = snapshot_task(paths)
    if snap is None:
        raise FileNotFoundError(f"no live lake snapshot under {paths.lake}: run the ingest flow first")
    cfg = training.model_config_task(kind, config)
    if isinstance(split, str):
        chosen = splits.load_task(paths, split)
    else:
        ratings = read_table_task(paths, c.RATINGS)
        chosen = splits.get_or_create_task(paths, ratings, split, snap.data_hash)
    reuse_training = to_registry and not force
    done = training.find_trained_task(paths, cfg, chosen.split_id, chosen.data_hash) if reuse_training else None
    if done is not None:
        splits.set_current_task(paths, chosen.split_id)
        return {**summary_task(paths, kind, done.version, reused=True, flow_run_name=flow_run.get_name()),
                "split_reused": chosen.reused}
    users = read_table_task(paths, c.USERS)
    movies = read_table_task(paths, c.MOVIES)
    result = training.train_and_evaluate_task(chosen, cfg, users, movies, k=k)
    splits.set_current_task(paths, chosen.split_id)
    if not to_registry:
        return training.summarize_task(result)
    recorded = training.record_task(paths, result, chosen, movies, promotion_metric, k)
    return {**summary_task(paths, kind, recorded.version, reused=False, seconds=result.seconds,
                           flow_run_name=flow_run.get_name()), "split_reused": chosen.reused}


def _value(text: str):
    """A --set value: JSON when it parses (numbers, lists, booleans), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    """CLI: run the training flow and print split id, metrics and timings as JSON."""
    ap = argparse.ArgumentParser(prog="python -m flows.train", description=train.__doc__)
    ap.add_argument("--kind", default=c.MODEL_KIND_DOT, choices=c.MODEL_KINDS)
    ap.add_argument("--strategy", default="random", choices=splits.STRATEGIES)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--valid-fraction", type=float, default=0.1)
    ap.add_argument("--cutoff", type=int, help="temporal: unix seconds (default: the test-fraction quantile)")
    ap.add_argument("--k", type=int, default=1, help="leave_last_k: ratings per user held out")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--split-id", help="train on this stored split instead of making one")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    ap.add_argument("--top-k", type=int, default=10, help="k of the ranking metrics")
    ap.add_argument("--promotion-metric", default=training.PROMOTION_METRIC, help="metric that moves `champion`")
    ap.add_argument("--force", action="store_true", help="train even if an identical training is registered")
    ap.add_argument("--no-registry", dest="to_registry", action="store_false", help="train and evaluate only")
    ap.add_argument("--home", help="data home (default: $LENSFLOW_HOME or ./.lensflow)")
    a = ap.parse_args(argv)
    if a.home:
        os.environ["LENSFLOW_HOME"] = str(resolve_paths(a.home).home)
    overrides = {key: _value(val) for key, _, val in (s.partition("=") for s in a.set)}
    spec = a.split_id or SplitSpec(a.strategy, a.test_fraction, a.valid_fraction, a.cutoff, a.k, a.seed)
    summary = train(kind=a.kind, split=spec, config=overrides or None, home=a.home, k=a.top_k,
                    promotion_metric=a.promotion_metric, force=a.force, to_registry=a.to_registry)
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
