"""Whole-pipeline wall time on the real ML-100k: first run (fresh data home) and rerun, against the
same work done by the plain functions without Prefect or MLflow (the compute share).

    .venv/bin/python bench/bench_pipeline.py [--data ../shared/data/ml-100k] [--out bench/results/pipeline.json]

`lensflow run` runs as a subprocess, exactly as a user runs it (imports, temporary Prefect API, MLflow
store creation included). The compute baseline runs ingest, split, both trainings with evaluation and
the publish (scoring, checks, warehouse swap) as plain function calls in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k"


def timed_cli(home: Path, data: Path) -> float:
    env = {**os.environ, "LENSFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    t = time.perf_counter()
    out = subprocess.run([str(Path(sys.executable).parent / "lensflow"), "run", "--home", str(home),
                          "--source", str(data)], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-3000:] + out.stderr[-3000:])
    return elapsed


def plain_compute(home: Path, data: Path) -> dict[str, float]:
    """The pipeline's work as plain function calls: no Prefect, no MLflow."""
    from tasks.sources import acquire
    from tasks.stores import lake
    from tasks.sources import movielens
    from tasks.stores import warehouse
    from tasks.core import contract as c
    from tasks.publishing import publish as pub
    from tasks.registry import serving
    from tasks.registry.model_ref import ModelRef, ServingModel
    from tasks.learning import split as splits
    from tasks.stores import split_store
    from tasks.learning import training
    from tasks.learning import kind_config
    from tasks.core.settings import Paths

    paths = Paths(home)
    s: dict[str, float] = {}
    t = time.perf_counter()
    folder = acquire.resolve_source(str(data), paths)
    data_hash = movielens.content_hash(folder)
    tables = movielens.read_sources(folder)
    lake.write_snapshot(paths, tables.as_dict(), data_hash)
    warehouse.rebuild(paths)
    s["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    split = splits.get_or_create(paths, tables.ratings, split_store.SplitSpec(), data_hash)
    split_store.set_current(paths, split.split_id)
    s["split"] = time.perf_counter() - t
    models = []
    for kind in c.MODEL_KINDS:
        t = time.perf_counter()
        result = training.train_and_evaluate(split, kind_config.model_config(kind), tables.users, tables.movies)
        s[f"train_{kind}"] = time.perf_counter() - t
        models.append(ServingModel(result.recommender, ModelRef(c.registered_model_name(kind), "0")))
    t = time.perf_counter()
    pub.publish(paths, serving.roles(models), tables.ratings, tables.movies, tables.users, split_id=split.split_id,
                data_hash=data_hash)
    s["publish"] = time.perf_counter() - t
    s["total"] = sum(s.values())
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if not (a.data / "u.data").is_file():
        sys.exit(f"no MovieLens 100k at {a.data}")
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-") as tmp:
        tmp = Path(tmp)
        first = timed_cli(tmp / "home", a.data)
        rerun = timed_cli(tmp / "home", a.data)
        compute = plain_compute(tmp / "plain", a.data)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "first_run_s": round(first, 2), "rerun_s": round(rerun, 2),
        "compute_s": {k: round(v, 2) for k, v in compute.items()},
        "first_run_overhead_share": round(1 - compute["total"] / first, 3),
    }
    print(json.dumps(result, indent=2))
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
