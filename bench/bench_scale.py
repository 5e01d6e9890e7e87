"""The whole pipeline at ML-25M size on synthetic data: wall time and peak memory per step.

    .venv/bin/python bench/bench_scale.py [--ratings 25000095] [--data DIR] [--home DIR]
        [--out bench/results/scale.json] [--md bench/results/scale.md]

Generates synthetic MovieLens files (`tasks.sources.synthetic`, ML-25M's shape by default: 162,541 users,
59,047 items, 25,000,095 ratings; users and items scale with --ratings unless given; `--taste 1.5` so
a model can beat popularity and the serving fit runs), then runs the real pipeline as a user does,
`python -m flows run --source DIR --home HOME --dot-config JSON --nn-config JSON`, in a subprocess,
with the explicit large-catalogue settings `models.recipes.LARGE_CATALOGUE` unless --dot-config /
--nn-config replace them. While it runs, the resident memory of the whole process tree is sampled
(every --interval s); afterwards each Prefect flow and task run's start and end come from the run's
own Prefect database (<home>/prefect), and each step's peak is the highest sample inside its
interval. The two trainings run side by side, so their peaks are the process's, not each model's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ML25M = dict(users=162_541, items=59_047, ratings=25_000_095)
GB = 1e9


class TreeSampler:
    """Resident memory (bytes) of a process and all its descendants, sampled on a thread."""

    def __init__(self, pid: int, interval: float):
        self.proc, self.interval = psutil.Process(pid), interval
        self.samples: list[tuple[float, int]] = []
        self.loads: list[float] = []          # 1-minute load average at each sample (a shared machine)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self._rss()))
                self.loads.append(os.getloadavg()[0])
            except psutil.NoSuchProcess:
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _inside(self, start, end) -> list[int]:
        return [j for j, (t, _) in enumerate(self.samples) if (start is None or t >= start) and (end is None or t <= end)]

    def peak(self, start: float | None = None, end: float | None = None) -> int:
        return max((self.samples[j][1] for j in self._inside(start, end)), default=0)

    def load(self, start: float | None = None, end: float | None = None) -> float:
        """Mean 1-minute load average over the samples inside [start, end] (nan without samples)."""
        inside = [self.loads[j] for j in self._inside(start, end)]
        return round(sum(inside) / len(inside), 1) if inside else float("nan")


def run_sampled(cmd: list[str], log: Path, interval: float, env: dict | None = None,
                timeout: float | None = None) -> dict:
    """Run cmd (stdout+stderr to log) under a TreeSampler: rc, wall s, the sampler, timed_out.

    Past `timeout` seconds the process tree is killed (rc -9) and what it did so far is still reported."""
    t0 = time.time()
    timed_out = False
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        sampler = TreeSampler(proc.pid, interval)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            sampler.stop()
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            rc = proc.wait()
    sampler.stop()
    return {"rc": rc, "wall_s": time.time() - t0, "start": t0, "end": time.time(), "sampler": sampler,
            "timed_out": timed_out}


LOG_WORDS = ("epoch", "fitted and evaluated", "promoted", "refused", "kept", "published", "split ", "serving")


def pipeline_lines(home: Path) -> list[str]:
    """The pipeline's own progress lines (epochs with their seconds, fits, decisions, the publication)."""
    log = home / "logs" / "lensflow.log"
    if not log.is_file():
        return []
    return [line.rstrip()[:400] for line in log.read_text(errors="replace").splitlines()
            if " INFO " in line and any(w in line for w in LOG_WORDS)]


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def prefect_runs(prefect_home: Path) -> list[dict]:
    """Every flow and task run of the pipeline's temporary Prefect API: kind, name, start, end (unix s)."""
    dbs = sorted(prefect_home.rglob("*.db"))
    rows = []
    for db in dbs:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
            for kind in ("flow_run", "task_run"):
                if kind not in tables:
                    continue
                for name, start, end, state in con.execute(
                        f"select name, start_time, end_time, state_type from {kind}"):
                    rows.append({"kind": kind.replace("_run", ""), "name": name, "start": _epoch(start),
                                 "end": _epoch(end), "state": state})
        finally:
            con.close()
    return sorted((r for r in rows if r["start"] is not None), key=lambda r: r["start"])


def steps_table(runs: list[dict], sampler: TreeSampler, min_s: float) -> list[dict]:
    out = []
    for r in runs:
        end = r["end"] or time.time()
        wall = end - r["start"]
        if r["kind"] == "task" and wall < min_s:
            continue
        out.append({"kind": r["kind"], "name": r["name"], "state": r["state"] if r["end"] else "RUNNING", "wall_s": round(wall, 1),
                    "peak_gb": round(sampler.peak(r["start"], end) / GB, 2),
                    "load": sampler.load(r["start"], end)})
    return out


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                      if line.startswith("Model name")), platform.processor())
    except OSError:
        model = platform.processor()
    return {"cpu": model, "nproc": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / GB, 1),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"# Whole pipeline on {result['data']['ratings']:,} synthetic ratings, {result['date']}",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} CPUs, {m['ram_gb']} GB RAM; load average at start "
        f"{m['load_avg_at_start']} (shared machine: wall times are upper bounds).",
        "",
        f"Data: `{result['generate']['command']}` — {result['data']['users']:,} users, {result['data']['items']:,} "
        f"items, {result['data']['ratings']:,} ratings, taste {result['data']['taste']}.",
        "",
        f"Command: `{result['command']}`",
        "",
        ("**Stopped by the benchmark's --timeout before the pipeline finished**; steps still running are "
         "marked RUNNING with their time so far. " if result["pipeline"]["timed_out"] else "") +
        f"Exit status {result['pipeline']['rc']}; wall {result['pipeline']['wall_s']:.0f} s; peak RSS of the "
        f"process tree {result['pipeline']['peak_gb']:.2f} GB (sampled every {result['interval_s']} s); mean "
        f"1-minute load average during the run {result['pipeline']['load']} on {m['nproc']} CPUs.",
        "",
        "| step (Prefect run) | kind | state | wall s | peak GB | mean load |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| generate synthetic data (before the pipeline) | — | — | {result['generate']['wall_s']:.1f} | "
        f"{result['generate']['peak_gb']:.2f} | — |",
    ]
    for s in result["steps"]:
        lines.append(f"| {s['name']} | {s['kind']} | {s['state']} | {s['wall_s']} | {s['peak_gb']} | {s['load']} |")
    lines += ["", f"Task runs shorter than {result['min_task_s']} s are left out of the table "
              "(all runs are in the .json).", "", "The pipeline's own log lines (`<home>/logs/lensflow.log`):", "",
              "```", *result["log_lines"], "```", ""]
    return "\n".join(lines)


def main() -> None:
    from models.recipes import LARGE_CATALOGUE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=ML25M["ratings"])
    ap.add_argument("--users", type=int, default=None, help="default: ML-25M's users per rating x --ratings")
    ap.add_argument("--items", type=int, default=None, help="default: ML-25M's items per rating x --ratings")
    ap.add_argument("--taste", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="reuse (or write) the synthetic files here")
    ap.add_argument("--home", type=Path, default=None, help="data home (default: a fresh temporary one)")
    ap.add_argument("--dot-config", default=json.dumps(LARGE_CATALOGUE["dot_bias"]))
    ap.add_argument("--nn-config", default=json.dumps(LARGE_CATALOGUE["embedding_nn"]))
    ap.add_argument("--extra", default="", help="more `lensflow run` options, one string")
    ap.add_argument("--interval", type=float, default=0.5, help="memory sampling interval, s")
    ap.add_argument("--min-task-s", type=float, default=2.0, help="task runs shorter than this stay out of the .md")
    ap.add_argument("--timeout", type=float, default=None, help="kill the pipeline after this many s, report so far")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    a = ap.parse_args()
    scale = a.ratings / ML25M["ratings"]
    users = a.users or max(10, round(ML25M["users"] * scale))
    items = a.items or max(10, round(ML25M["items"] * scale))
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    mach = machine()
    with tempfile.TemporaryDirectory(prefix="lensflow-scale-") as tmp:
        data = a.data or Path(tmp) / "synthetic"
        gen_cmd = [py, "-m", "tasks.sources.synthetic", "--out", str(data), "--users", str(users), "--items", str(items),
                   "--ratings", str(a.ratings), "--seed", str(a.seed), "--taste", str(a.taste)]
        if (data / "u.data").is_file():
            gen = {"rc": 0, "wall_s": float("nan"), "peak_gb": float("nan"), "reused": True}
        else:
            g = run_sampled(gen_cmd, Path(tmp) / "generate.log", a.interval, env)
            if g["rc"]:
                sys.exit((Path(tmp) / "generate.log").read_text()[-3000:])
            gen = {"rc": 0, "wall_s": g["wall_s"], "peak_gb": g["sampler"].peak() / GB, "reused": False}
        gen["command"] = "python -m tasks.sources.synthetic " + " ".join(gen_cmd[3:]).replace(str(data), "DIR")
        home = a.home or Path(tmp) / "home"
        cmd = [py, "-m", "flows", "run", "--source", str(data), "--home", str(home),
               "--dot-config", a.dot_config, "--nn-config", a.nn_config, *a.extra.split()]
        log = home.parent / f"{home.name}-run.log"
        home.parent.mkdir(parents=True, exist_ok=True)
        run_env = {**env, "PREFECT_HOME": str(home / "prefect")}
        r = run_sampled(cmd, log, a.interval, run_env, timeout=a.timeout)
        sampler = r["sampler"]
        runs = prefect_runs(home / "prefect")
        tail = log.read_text(errors="replace")[-4000:]
        shown = " ".join(f"'{x}'" if x.startswith("{") else x for x in cmd[1:])
        result = {
            "date": started, "machine": mach, "interval_s": a.interval, "min_task_s": a.min_task_s,
            "data": {"users": users, "items": items, "ratings": a.ratings, "taste": a.taste, "seed": a.seed},
            "generate": gen,
            "command": "python " + shown.replace(str(data), "DIR").replace(str(home), "HOME"),
            "pipeline": {"rc": r["rc"], "wall_s": round(r["wall_s"], 1), "peak_gb": round(sampler.peak() / GB, 2),
                         "load": sampler.load(), "timed_out": r["timed_out"]},
            "log_lines": pipeline_lines(home),
            "steps": steps_table(runs, sampler, a.min_task_s),
            "all_runs": [{**x, "wall_s": round((x["end"] or r["end"]) - x["start"], 2),
                          "peak_gb": round(sampler.peak(x["start"], x["end"] or r["end"]) / GB, 2)} for x in runs],
            "memory_samples": [(round(t - r["start"], 1), round(b / GB, 3)) for t, b in sampler.samples[::4]],
            "output_tail": tail,
        }
    if a.out:
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    print(tail[-2000:])
    if a.md:
        a.md.write_text(markdown(result))
    if r["rc"]:
        sys.exit(r["rc"])


if __name__ == "__main__":
    main()
