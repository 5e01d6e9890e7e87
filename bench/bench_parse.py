"""Parse time of the MovieLens readers: u.data alone, the content hash, and all files (read_sources).

Run: python bench/bench_parse.py [--real PATH] [--synthetic DIR] [--repeat 7] [--against REV]
Each folder is timed in its own subprocess (peak RSS is that process's ru_maxrss); prints one JSON line
per folder with the median and min of `repeat` runs after one warm-up run (files in the page cache).
--against REV also times tasks/sources/movielens.py as it was at git revision REV, interleaved run by run with
the current one (a fair before/after on a machine whose load changes).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere


def _time(fn, repeat: int) -> dict:
    fn()  # warm-up: page cache, imports
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return {"median_s": round(statistics.median(runs), 4), "min_s": round(min(runs), 4)}


def _baseline(rev: str):
    """The MovieLens parser at git revision rev (tasks/sources/movielens.py; tasks/movielens.py before the
    tasks/ groups), imported as a separate module."""
    import importlib.util
    for where in ("tasks/sources/movielens.py", "tasks/movielens.py"):
        shown = subprocess.run(["git", "show", f"{rev}:{where}"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode == 0:
            break
    shown.check_returncode()
    text = shown.stdout
    path = Path(tempfile.mkdtemp(prefix="bench-parse-")) / "baseline_movielens.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("baseline_movielens", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(folder: str, repeat: int, rev: str) -> dict:
    """Median/min of parse_ratings and read_sources, baseline and current interleaved run by run."""
    from tasks.sources import movielens
    from tasks.sources import input_rules
    old, path = _baseline(rev), Path(folder)
    runs: dict[str, list[float]] = {}
    for m in (old, movielens):
        m.read_sources(path)                   # warm-up
    for _ in range(repeat):
        for label, m in ((rev, old), ("current", movielens)):
            for name, fn in (("parse_ratings", lambda: m.parse_ratings(path / input_rules.RATINGS_FILE)),
                             ("read_sources", lambda: m.read_sources(path))):
                t = time.perf_counter()
                fn()
                runs.setdefault(f"{label}.{name}", []).append(time.perf_counter() - t)
    return {"folder": folder, "against": rev, **{k: {"median_s": round(statistics.median(v), 4),
                                                      "min_s": round(min(v), 4)} for k, v in runs.items()}}


def measure(folder: str, repeat: int) -> dict:
    from tasks.sources import input_rules, movielens
    path = Path(folder)
    out = {"folder": folder, "u.data_bytes": (path / input_rules.RATINGS_FILE).stat().st_size,
           "ratings": len(movielens.parse_ratings(path / input_rules.RATINGS_FILE))}
    out["parse_ratings"] = _time(lambda: movielens.parse_ratings(path / input_rules.RATINGS_FILE), repeat)
    out["content_hash"] = _time(lambda: movielens.content_hash(path), repeat)
    out["read_sources"] = _time(lambda: movielens.read_sources(path), repeat)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    ap.add_argument("--synthetic", action="append", default=[], help="a generated folder (tasks.sources.synthetic)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--against", help="git revision whose tasks/sources/movielens.py to compare with")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(compare(a.one, a.repeat, a.against) if a.against else measure(a.one, a.repeat)))
        return 0
    folders = ([a.real] if (Path(a.real) / "u.data").is_file() else []) + a.synthetic
    for folder in folders:
        extra = ["--against", a.against] if a.against else []
        res = subprocess.run([sys.executable, __file__, "--one", folder, "--repeat", str(a.repeat), *extra],
                             cwd=ROOT, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{folder} failed:\n{res.stderr[-4000:]}")
        print(res.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
