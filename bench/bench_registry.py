"""Time spent in MLflow per training (run, params, step metrics, pictures, pyfunc model, registration,
promotion) on top of training, with real ML-100k-sized models. Goal: <= 1 s per model.

Run: .venv/bin/python bench/bench_registry.py [--data /work/shared/data/ml-100k] [--repeats 5]
Wall seconds, and for the total also this process's CPU seconds (on a shared CPU the wall time
includes waiting for other processes). Trains each model kind once with its default config (real files when present, else synthetic data of
the same size), then logs + registers + promotes it `--repeats` times into a fresh SQLite store under a
temporary data home. The one-time costs of a process (creating and migrating the store, first imports)
are measured apart. Prints one JSON line per measurement; results go to bench/results/registry.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"


def load_ratings(folder: Path, work: Path):
    """(ratings, movies) frames: the real ML-100k when present, else a synthetic set of its size."""
    from tasks.sources import movielens
    from tasks.sources import synthetic

    if not (folder / "u.data").is_file():
        folder = synthetic.generate(work / "synthetic", n_users=943, n_items=1682, n_ratings=100_000, seed=0)
    tables = movielens.read_sources(folder)
    return tables.ratings, tables.movies, str(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    import numpy as np

    from models.recommender import Recommender
    from tasks.core import contract as c
    from tasks.registry import versions as r
    from tasks.registry import promote
    from tasks.registry import tracking as t
    from tasks.registry import mlflow_store
    from tasks.registry import plots
    from tasks.core.settings import Paths
    from tasks.learning.kind_config import model_config
    from tasks.learning.split import unix_seconds
    imports = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="lensflow-bench-registry-") as tmp:
        work = Path(tmp)
        ratings, movies, source = load_ratings(args.data, work)
        rng = np.random.default_rng(0)
        is_valid = rng.random(len(ratings)) < 0.1
        train, valid = ratings[~is_valid].reset_index(drop=True), ratings[is_valid].reset_index(drop=True)
        paths = Paths(work / "home")

        t1 = time.perf_counter()
        mlflow_store.experiment_id(paths)  # creates + migrates the SQLite store: once per data home
        store_init = time.perf_counter() - t1
        print(json.dumps({"measure": "process imports (mlflow, torch, prefect, tasks)", "seconds": round(imports, 2)}))
        print(json.dumps({"measure": "create + migrate empty SQLite store (once per home)",
                          "seconds": round(store_init, 2)}))

        rows = []
        for kind in c.MODEL_KINDS:
            config = model_config(kind)
            t2 = time.perf_counter()
            rec = Recommender.fit(train[c.USER_ID], train[c.ITEM_ID], train[c.RATING], config,
                                  valid=(valid[c.USER_ID], valid[c.ITEM_ID], valid[c.RATING],
                                         unix_seconds(valid[c.RATED_AT])), device="cpu",
                                  times=unix_seconds(train[c.RATED_AT]))
            fit_s = time.perf_counter() - t2
            pred = rec.predict(valid[c.USER_ID].to_numpy(), valid[c.ITEM_ID].to_numpy(),
                               times=unix_seconds(valid[c.RATED_AT]))
            rmse = float(np.sqrt(np.mean((pred - valid[c.RATING].to_numpy()) ** 2)))
            lineage = t.Lineage(kind, "bench-split", "bench-hash", device="cpu", train_seconds=fit_s)
            for i in range(args.repeats + 1):  # the first round warms matplotlib and MLflow's code paths
                a = time.perf_counter()
                with tempfile.TemporaryDirectory() as pics:
                    plots.write_pictures(Path(pics), rec, rec.history, movies, train)
                b, cpu_b = time.perf_counter(), time.process_time()
                run_id = t.log_training(paths, rec, config, {"rmse": rmse + 0.01 * i}, rec.history, lineage,
                                        movies=movies, train=train)
                d = time.perf_counter()
                version = r.register(paths, run_id, kind)
                e = time.perf_counter()
                promote.promote_if_better(paths, kind, version, "rmse")
                f, cpu_f = time.perf_counter(), time.process_time()
                row = {"kind": kind, "round": i, "fit_seconds": round(fit_s, 2), "pictures_alone": round(b - a, 3),
                       "log_training": round(d - b, 3), "register": round(e - d, 3), "promote": round(f - e, 3),
                       "mlflow_total": round(f - b, 3), "mlflow_total_cpu": round(cpu_f - cpu_b, 3)}
                print(json.dumps(row), flush=True)
                if i > 0:
                    rows.append(row)
            g = time.perf_counter()
            r.load_for_scoring(paths, kind)
            print(json.dumps({"kind": kind, "measure": "load_for_scoring", "seconds": round(time.perf_counter() - g, 3)}))
        for kind in c.MODEL_KINDS:
            mine = [row for row in rows if row["kind"] == kind]
            summary = {k: round(statistics.median(row[k] for row in mine), 3)
                       for k in ("pictures_alone", "log_training", "register", "promote", "mlflow_total",
                                 "mlflow_total_cpu")}
            print(json.dumps({"kind": kind, "median_of": len(mine), **summary,
                              "max_mlflow_total": max(row["mlflow_total"] for row in mine)}))
        print(json.dumps({"source": source, "ratings": len(ratings), "python": platform.python_version(),
                          "machine": platform.machine()}))


if __name__ == "__main__":
    main()
