"""Ingest speed and peak memory: real ML-100k and a synthetic set (default ML-25M size).

Run: python bench/bench_ingest.py [--real PATH] [--ratings 25000000 --users 162541 --items 59047]
                                  [--skip-synthetic | --synthetic-dir DIR] [--flow] [--work DIR]
Each phase (generate, ingest) runs in its own subprocess so its peak RSS (ru_maxrss) is its own.
The ingest phase runs the same plain functions the flow's tasks wrap (hash, validate, lake, warehouse);
--flow also times the Prefect flow (first call includes the temporary server start) on each data set.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def phase_generate(out: str, users: int, items: int, ratings: int) -> dict:
    from tasks.sources import synthetic
    t = time.perf_counter()
    synthetic.generate(out, users, items, ratings, seed=0)
    size = sum(p.stat().st_size for p in Path(out).iterdir())
    return {"phase": "generate", "seconds": round(time.perf_counter() - t, 2), "bytes": size,
            "peak_rss_mb": round(peak_rss_mb())}


def phase_ingest(source: str, home: str) -> dict:
    from tasks.stores import lake
    from tasks.sources import movielens
    from tasks.stores import warehouse
    from tasks.core.settings import Paths
    paths = Paths(Path(home))
    steps = {}
    t0 = t = time.perf_counter()
    data_hash = movielens.content_hash(source)
    steps["hash"], t = time.perf_counter() - t, time.perf_counter()
    tables = movielens.read_sources(source)
    steps["validate"], t = time.perf_counter() - t, time.perf_counter()
    lake.write_snapshot(paths, tables, data_hash, make_current=False)
    steps["lake"], t = time.perf_counter() - t, time.perf_counter()
    del tables
    warehouse.publish_snapshot(paths, data_hash)
    steps["warehouse"] = time.perf_counter() - t
    snap = lake.current(paths)
    return {"phase": "ingest", "source": source, "seconds": round(time.perf_counter() - t0, 2),
            "steps": {k: round(v, 2) for k, v in steps.items()}, "rows": snap.row_counts,
            "lake_bytes": sum(p.stat().st_size for p in snap.path.iterdir()),
            "warehouse_bytes": paths.warehouse.stat().st_size, "peak_rss_mb": round(peak_rss_mb())}


def phase_flow(source: str, home: str) -> dict:
    from tasks.core.settings import apply_environment
    apply_environment(home)
    Path(home).mkdir(parents=True, exist_ok=True)
    import os
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from flows.ingest import ingest
    out = {}
    for run in ("first (server start + ingest)", "second (fresh home, warm server)", "third (no-op rerun)"):
        h = home + "-b" if run.startswith("second") else home
        t = time.perf_counter()
        summary = ingest(source=source, home=h)
        out[run] = {"seconds": round(time.perf_counter() - t, 2), "noop": summary["noop"]}
    return {"phase": "flow", "source": source, "runs": out, "peak_rss_mb": round(peak_rss_mb())}


def run_phase(*args: str) -> dict:
    """Run one phase in a fresh interpreter; returns its JSON line."""
    res = subprocess.run([sys.executable, __file__, "--phase", *args], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"phase {args[0]} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--real", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    ap.add_argument("--ratings", type=int, default=25_000_000)
    ap.add_argument("--users", type=int, default=162_541)
    ap.add_argument("--items", type=int, default=59_047)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--synthetic-dir", help="reuse a generated folder (skips generation; kept afterwards)")
    ap.add_argument("--flow", action="store_true", help="also time the Prefect flow on the real files")
    ap.add_argument("--work", help="scratch folder (default: a temporary one, removed afterwards)")
    a = ap.parse_args(argv)
    if a.phase:
        name, *rest = a.phase
        fn = {"generate": lambda o, u, i, r: phase_generate(o, int(u), int(i), int(r)),
              "ingest": phase_ingest, "flow": phase_flow}[name]
        print(json.dumps(fn(*rest)))
        return 0
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if (Path(a.real) / "u.data").is_file():
            print(json.dumps(run_phase("ingest", a.real, str(work / "home-real"))), flush=True)
            if a.flow:
                print(json.dumps(run_phase("flow", a.real, str(work / "home-flow"))), flush=True)
        if not a.skip_synthetic:
            syn = Path(a.synthetic_dir) if a.synthetic_dir else work / "synthetic"
            if not a.synthetic_dir:
                gen = run_phase("generate", str(syn), str(a.users), str(a.items), str(a.ratings))
                print(json.dumps(gen | {"users": a.users, "items": a.items, "ratings": a.ratings}), flush=True)
            print(json.dumps(run_phase("ingest", str(syn), str(work / "home-synthetic"))), flush=True)
            if a.flow:
                print(json.dumps(run_phase("flow", str(syn), str(work / "home-flow-synthetic"))), flush=True)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
