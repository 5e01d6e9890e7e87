"""Serving fit at scale: refit from scratch, or continue the split fit? Quality on the split's test part.

    .venv/bin/python bench/bench_warm_start.py --split HOME/splits/<split id> [--lr-share 0.1 1.0] [--scratch]

Reads a stored split (train / valid / test Parquet, e.g. the one a `bench_scale.py` run left in its home), fits
the `LARGE_CATALOGUE` dot-bias config on train (the evaluated model), then for each `--lr-share` continues it
for one epoch on train + valid at that share of the peak learning rate (what `serving_epochs: 1` does), and
with `--scratch` also refits from scratch on train + valid. Each is scored on the test part (NDCG@10, recall@10,
coverage@10 on the config's `eval_users` sample), with most-rated popularity beside them. One JSON line each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.recipes import LARGE_CATALOGUE  # noqa: E402
from tasks.learning import evaluate as ev  # noqa: E402
from tasks.learning import training  # noqa: E402
from tasks.learning import kind_config

KEEP = ("ndcg_at_10", "recall_at_10", "coverage_at_10")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", type=Path, required=True, help="a stored split's folder (train/valid/test.parquet)")
    ap.add_argument("--lr-share", type=float, nargs="*", default=[0.1, 1.0])
    ap.add_argument("--scratch", action="store_true", help="also refit from scratch on train + valid")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    missing = [n for n in ("train", "valid", "test") if not (a.split / f"{n}.parquet").is_file()]
    if missing:
        print(f"bench_warm_start: {a.split} has no {', '.join(m + '.parquet' for m in missing)}", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    train, valid, test = (pd.read_parquet(a.split / f"{n}.parquet") for n in ("train", "valid", "test"))
    kept = pd.concat([train, valid], ignore_index=True)
    plan = kind_config.kind_settings("dot_bias", {**LARGE_CATALOGUE["dot_bias"], "serving_epochs": 0})
    cfg = plan.config

    def report(name, rec, seconds):
        m = ev.evaluate(rec, kept, test, k=10, max_users=plan.eval_users)
        print(json.dumps({"fit": name, "seconds": round(seconds), **{k: round(m[k], 4) for k in KEEP}}), flush=True)

    pop = ev.baseline_metrics(kept, test, k=10, max_users=plan.eval_users)
    print(json.dumps({"fit": "most-rated popularity", **{k: round(pop[k], 4) for k in KEEP if k in pop}}), flush=True)
    t0 = time.perf_counter()
    evaluated = training.fit(train, cfg)
    report(f"split fit: train, {cfg.train.epochs} epochs", evaluated, time.perf_counter() - t0)
    for share in a.lr_share:
        t0 = time.perf_counter()
        warm = training.fit(kept, cfg, init=evaluated, epochs=1, lr=cfg.train.lr * share)
        report(f"continued: train + valid, 1 epoch at {share:g} x peak lr", warm, time.perf_counter() - t0)
    if a.scratch:
        t0 = time.perf_counter()
        report(f"refit: train + valid, {cfg.train.epochs} epochs", training.fit(kept, cfg), time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
