"""Is a pipeline run a no-op? The same decisions the flows make, answered from the stores alone.

`lensflow run` asks this before it starts Prefect: when the source's content is live, every kind's
training is already registered under its fingerprint, each champion's serving fit on this data exists, and
the live publication comes from the versions publish would choose, nothing would change, and the CLI says so without a
flow run (a scheduled deployment run, or `--force`, always runs the flows).
"""

from __future__ import annotations

from tasks.sources import acquire
from tasks.sources import movielens
from tasks.registry import serving
from tasks.stores import split_store
from tasks.learning import kind_config
from tasks.registry import trainings
from tasks.stores import warehouse
from tasks.core import contract as c
from tasks.core.settings import Paths


def unchanged(paths: Paths, source: str | None, spec: split_store.SplitSpec, configs: dict[str, dict | None]) -> dict | None:
    """{"data_hash", "split_id", "trained": {kind: version}, "publication_id"} when a run would change nothing, else None."""
    if warehouse.build_info(paths) is None:
        return None
    folder = acquire.resolve_source(source, paths)
    data_hash = movielens.content_hash(folder)
    if not warehouse.up_to_date(paths, data_hash):
        return None
    sid = split_store.split_id(spec, data_hash)
    if split_store.current(paths) != sid:  # the flow would store the split or point CURRENT at it
        return None
    trained = {}
    for kind, overrides in configs.items():
        ref = trainings.find_trained(paths, kind_config.model_config(kind, overrides), sid, data_hash)
        if ref is None:
            return None
        trained[kind] = ref.version
    # what publish would serve: each champion's serving fit on this data (else the champion), in order
    chosen = serving.load_champions(paths, list(configs), c.ALIAS_SERVING, data_hash=data_hash, load=False)
    if not chosen:
        return None
    if any(m.alias != c.ALIAS_SERVING for m in chosen if m.alias != c.ALIAS_CANDIDATE):
        return None  # a champion without its serving fit: the pipeline would fit one now
    live = warehouse.live_publication_matches(paths, [m.ref for m in serving.roles(chosen).models], data_hash)
    if live is None:
        return None
    return {"data_hash": data_hash, "split_id": sid, "trained": trained, "publication_id": live}
