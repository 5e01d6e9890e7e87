"""What each `lensflow` subcommand does: call a flow (or a registry/warehouse function) and print the result."""

from __future__ import annotations

import json
import os

from flows import logs
from flows.query import query  # noqa: F401 - `lensflow query`: cli.py calls the commands by name
from tasks.core.settings import Paths

def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _split(a) -> "SplitSpec":  # noqa: F821
    """The split options as a SplitSpec; a value it refuses (a fraction outside (0, 1), k < 1) is a ConfigError."""
    from tasks.core.errors import ConfigError
    from tasks.stores.split_store import SplitSpec

    kw = {"strategy": a.split, "valid_fraction": a.valid_fraction, "seed": a.seed}
    if a.split == "leave_last_k":
        kw["k"] = a.leave_k
    else:
        kw["test_fraction"] = a.test_fraction
    if a.cutoff is not None:
        kw["cutoff"] = a.cutoff
    try:
        return SplitSpec(**kw)
    except ValueError as e:
        raise ConfigError(f"split options: {e}") from None


def refuse_early(paths: Paths, source: str | None = None, configs: dict | None = None, *,
                 acquires: bool = False, metrics: dict | None = None) -> None:
    """Permanent mistakes fail before any flow starts: a bad config, a --source that is no MovieLens copy, no
    way to get the default download. The local checks come first, so a typo is never a download's wait.
    (A download made here is cached: the flow's acquire step reuses it.)"""
    from tasks.sources import acquire

    if configs:
        from tasks.learning import promotion
        from tasks.learning import kind_config

        for kind, overrides in configs.items():
            promotion.promotion_metric(kind_config.kind_settings(kind, overrides).config, (metrics or {}).get(kind))
    if source:
        acquire.check_source(source, paths)
    elif acquires and not os.environ.get(acquire.SOURCE_ENV):
        acquire.resolve_source(None, paths)


def dask_scheduler(a) -> str | None:
    """The Dask scheduler for --shards (the option, else $LENSFLOW_DASK_ADDRESS), reached now: a bad or
    unreachable one fails in seconds, before any flow starts."""
    from tasks.core import settings
    from tasks.core.errors import ConfigError

    if a.dask_address and a.shards < 2:
        raise ConfigError("--dask-address runs shards: give --shards 2 or more")
    address = settings.dask_address(a.dask_address) if a.shards > 1 else None
    if address:
        from tasks.publishing import scheduler

        scheduler.check(address)
    return address


def run(a, paths: Paths) -> int:
    from tasks.core import contract as c
    from tasks.learning import kind_config

    configs = kind_config.configs_by_kind(a.kinds, a.dot_config, a.nn_config)
    spec = _split(a)
    address = dask_scheduler(a)
    from tasks.learning import promotion
    from tasks.core.settings import mlflow_ui_url

    metrics = promotion.promotion_metrics(promotion.parse(a.promotion_metric))   # a wrong kind or metric: one line
    refuse_early(paths, a.source, configs, acquires=True, metrics=metrics)
    summary = None if a.force else unchanged_summary(paths, a.source, spec, configs)
    if summary is None:
        from flows.pipeline import pipeline

        logs.to_file(paths, a.verbose)

        summary = pipeline(source=a.source, home=paths, split=spec, kinds=a.kinds,
                           dot_config=a.dot_config, nn_config=a.nn_config, promotion_metrics=metrics or None,
                           n=a.top_n, k=a.similar_k, retain=a.retain, force=a.force,
                           refuse_narrowing=a.refuse_narrowing, shards=a.shards, dask_address=address,
                           device=a.device)
    pub = summary["publication"]
    print("\nlensflow: pipeline finished")
    from tasks.runs import report

    for m in summary["models"]:
        shown = {f"test_{k}": round(m["metrics"][f"test_{k}"], 4) for k in report.job_metrics(m["kind"])
                 if f"test_{k}" in m["metrics"]}
        print(f"  {m['model_name']} v{m['version']}{' (reused)' if m['reused'] else ''} on {m['device'] or '?'}: "
              f"{m['decision']} — {m['reason']}  test {shown}")
    for fit in summary.get("serving") or []:
        print(f"  serving fit {c.registered_model_name(fit['kind'])} v{fit['version']}"
              f"{' (reused)' if fit['reused'] else ''}: v{fit['evaluated_version']}'s config refit on all "
              f"{fit['rows']:,} ratings")
    state = "kept (nothing changed)" if pub.get("skipped") else f"{pub['recommendation_rows']:,} recommendations"
    print(f"  publication {pub['publication_id']}: {state}")
    for line in report.roles_lines(pub):
        print("  " + line)
    if not pub.get("skipped"):
        print("  " + health_line(pub["health"]))
        for warning in pub.get("warnings") or []:
            print(f"  WARNING narrowing: {warning}")
    print(f"\nOutputs under {paths.home}:\n  warehouse  {paths.warehouse}\n  lake       {paths.lake}\n"
          f"  MLflow     {paths.mlflow_tracking_uri}  (UI: {mlflow_ui_url(paths.mlflow_tracking_uri)}, "
          f"lensflow mlflow-ui)\n"
          f"  snapshots  {paths.publications}")
    home = f" --home {paths.home}" if a.home else ""   # a hint runs as printed
    print(f"\nTry:\n  lensflow query top10 --user 1{home}\n"
          f"  duckdb -readonly {paths.warehouse} \"select * from user_recommendations where user_id = 1 "
          "and rank <= 10\"")
    return 0


def unchanged_summary(paths: Paths, source, spec, configs: dict) -> dict | None:
    """The pipeline's summary when a run would change nothing (tasks/runs/rerun.py), without starting Prefect."""
    from tasks.runs import report
    from tasks.runs import rerun

    found = rerun.unchanged(paths, source, spec, configs)
    if found is None:
        return None
    print(f"lensflow: nothing changed (data {found['data_hash'][:12]}, split {found['split_id']}): "
          "every step would reuse what it made last time; --force runs them again")
    models = [report.training_summary(paths, kind, version, reused=True) for kind, version in found["trained"].items()]
    return {"models": models, "publication": {"publication_id": found["publication_id"], "skipped": True}}


def health_line(figures: dict) -> str:
    """The publication's reach and bias in one line (docs/publication_health.md defines each figure)."""
    from tasks.publishing import publication_metrics as pm

    get = figures.get
    return (f"health: top-10 lists cover {get(pm.COVERAGE_AT_10, float('nan')):.1%} of {int(get(pm.N_ITEMS, 0)):,} "
            f"items, Gini@10 {get(pm.GINI_AT_10, float('nan')):.3f}, most-exposed 1% of items take "
            f"{get(pm.TOP1PCT_SHARE_AT_10, float('nan')):.1%} of slots, fallback lists "
            f"{get(pm.FALLBACK_SHARE, float('nan')):.1%} of users  (lensflow query health)")


def ingest(a, paths: Paths) -> int:
    refuse_early(paths, a.source, acquires=True)
    from flows.ingest import ingest as ingest_flow

    logs.to_file(paths, a.verbose)

    _print_json(ingest_flow(source=a.source, home=paths))
    return 0


def train(a, paths: Paths) -> int:
    spec = a.split_id or _split(a)
    refuse_early(paths, configs={a.kind: a.config})
    from tasks.learning import kind_config, promotion

    promotion.promotion_metric(kind_config.model_config(a.kind, a.config), a.promotion_metric, a.top_k)
    from flows.train import train as train_flow

    logs.to_file(paths, a.verbose)

    _print_json(train_flow(kind=a.kind, split=spec, config=a.config, home=paths,
                           k=a.top_k, promotion_metric=a.promotion_metric, force=a.force,
                           to_registry=a.to_registry, device=a.device))
    return 0


def publish(a, paths: Paths) -> int:
    from tasks.core import contract as c
    from tasks.registry import serving

    address = dask_scheduler(a)
    if a.version not in (c.ALIAS_SERVING, c.ALIAS_CHAMPION):
        # a version or alias asked for by name: one line on what exists, before Prefect's server starts (~10 s)
        serving.load_champions(paths, list(c.MODEL_KINDS), a.version, load=False)
    from flows.publish import publish as publish_flow

    logs.to_file(paths, a.verbose)

    _print_json(publish_flow(home=paths, version=a.version, model=a.model, n=a.top_n, k=a.similar_k,
                             retain=a.retain, force=True, refuse_narrowing=a.refuse_narrowing, shards=a.shards,
                             dask_address=address, device=a.device))
    return 0


def promote(a, paths: Paths) -> int:
    from dataclasses import asdict

    from tasks.registry.promote import promote as override   # MLflow is slow to import: only when asked

    _print_json(asdict(override(paths, a.kind, a.version, a.reason)))
    return 0


def mlflow_ui(a, paths: Paths) -> int:
    import errno
    import socket

    import urllib.parse

    from tasks.core import settings
    from tasks.registry import versions as registry
    from tasks.core.errors import CannotListen

    port = a.port if a.port is not None else settings.mlflow_ui_port()
    # The server would log the taken port and exit 0; a caller must see that nothing started.
    with socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET) as probe:
        try:
            probe.bind((a.host, port))
        except OSError as e:
            hint = "another server has it: pick another with --port" if e.errno == errno.EADDRINUSE else \
                "check --host (an address of this machine, such as 127.0.0.1)"
            raise CannotListen(f"cannot listen on {a.host}:{port} ({e.strerror}): {hint}") from None
    argv = registry.server_command(paths, port=port, host=a.host)
    print("starting:", " ".join(argv), flush=True)
    links = settings.mlflow_ui_url(paths.mlflow_tracking_uri)
    if urllib.parse.urlsplit(links).port != port:
        print(f"note: links in logs and artifacts point at {links}; set {settings.MLFLOW_UI_ENV}="
              f"http://{a.host}:{port} for the runs to link here", flush=True)
    os.execvp(argv[0], argv)
    return 0  # not reached


def where(a, paths: Paths) -> int:
    _print_json({"home": paths.home, "data": paths.data_uri, "raw": paths.raw, "lake": paths.lake, "splits": paths.splits,
                 "publications": paths.publications, "warehouse": paths.warehouse,
                 "mlflow_tracking_uri": paths.mlflow_tracking_uri, "prefect_home": os.environ.get("PREFECT_HOME")})
    return 0
