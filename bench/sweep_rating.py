"""Hyper-parameter sweep and seed-bagging study of the rating models on the real MovieLens 100k.

    python bench/sweep_rating.py --device cuda --workers 12 --trials 160 --splits 1,2 --out sweep.jsonl

Built for a GPU box (needs only torch, numpy, pandas); on the 2-core CPU use a handful of trials.
Selection protocol: trials are scored on tuning split seeds (never 42, the reported split). Phase 1
draws random `dot_bias` + `rating_input` configs around the defaults and ranks them by mean RMSE over
the tuning splits. Phase 2 ("bagging") refits the best configs and the NN default with several training
seeds and reports the RMSE of averaged predictions: 1..n seeds of one config, and dot + NN blends.
Results: bench/results/sweep_rating.md. Every line of --out is one fitted model (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

SPACES = {
    "dot_bias": dict(n_factors=[32, 50, 64, 100, 150], wd=[0.05, 0.1, 0.15, 0.2, 0.3, 0.5],
                     l2=[0.0, 0.0, 0.005, 0.01], epochs=[4, 5, 6, 8, 10], lr=[1e-3, 2e-3, 3e-3, 5e-3],
                     batch_size=[128, 256, 512]),
    "embedding_nn": dict(n_factors=[0, 0, 32, 64], layers=[(400,), (800,), (1000,), (400, 100), (800, 200)],
                         dropout=[0.1, 0.2, 0.3, 0.5], wd=[0.05, 0.1, 0.2, 0.3], epochs=[4, 5, 6, 8],
                         lr=[1e-3, 2e-3, 3e-3, 5e-3], batch_size=[128, 256, 512]),
}
_STATE: dict = {}


def _init(data: str, device: str, splits: list[int]):
    """Worker start: one CPU thread, the splits in memory (each worker loads its own copy)."""
    import torch
    import bench_models as bm
    torch.set_num_threads(1)
    ratings, uf, itf = bm.load(Path(data))
    _STATE.update(device=torch.device(device), feats=(uf, itf),
                  splits={s: bm.random_split(ratings, 0.2, s) for s in splits})


def _fit(job: dict) -> dict:
    """Fit one config on one split; returns the job with RMSE, seconds and (if asked) predictions."""
    import torch
    import bench_models as bm
    from models.recipes import for_kind
    from models.recommender import Recommender
    from tasks.core import contract as c
    from tasks.learning import evaluate as ev
    over = dict(job["cfg"])
    kind = over.pop("kind", "dot_bias")
    cfg = for_kind(kind, **({"loss": "mse"} if kind == "dot_bias" else {}), **over)   # rating recipes
    train, valid = _STATE["splits"][job["split"]]
    dev = _STATE["device"]
    uf, itf = _STATE["feats"] if cfg.use_side_info else (None, None)
    t0 = time.perf_counter()  # no per-epoch validation: only the final RMSE counts here
    rec = Recommender.fit(*bm.arrays(train), cfg, user_features=uf, item_features=itf, device=dev,
                          times=train[c.RATED_AT].to_numpy())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    pred = rec.predict(valid[c.USER_ID].to_numpy(), valid[c.ITEM_ID].to_numpy(), times=valid[c.RATED_AT].to_numpy())
    out = dict(job, rmse=ev.rmse(valid[c.RATING], pred), secs=secs)
    if job.get("keep_pred"):
        out["pred"] = pred.astype(float).round(5).tolist()
    return out


def _run(jobs, args, sink, deadline=None):
    """Run jobs on a spawn pool (CUDA cannot fork); stop submitting after `deadline`."""
    ctx = get_context("spawn")
    done = []
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_init,
                             initargs=(str(args.data), args.device, args.splits)) as pool:
        futs = [pool.submit(_fit, j) for j in jobs]
        for f in as_completed(futs):
            if f.cancelled():  # cut by the deadline
                continue
            r = f.result()
            done.append(r)
            sink.write(json.dumps({k: v for k, v in r.items() if k != "pred"}) + "\n")
            sink.flush()
            if deadline and time.time() > deadline:
                for g in futs:
                    g.cancel()
    return done


def sample_configs(kind: str, n: int, seed: int) -> list[dict]:
    """The kind's current default first, then n-1 distinct random draws from its space."""
    rng, seen, out = random.Random(seed), set(), [dict(kind=kind)]
    while len(out) < n:
        cfg = dict(kind=kind, **{k: rng.choice(v) for k, v in SPACES[kind].items()})
        key = tuple(sorted(cfg.items()))
        if key not in seen:
            seen.add(key)
            out.append(cfg)
    return out


def phase1(args, sink) -> dict[str, list[dict]]:
    """Random search per kind (trials interleaved so a deadline cuts both); configs best first."""
    cfgs = [cfg for pair in zip(*(sample_configs(k, args.trials, args.sample_seed) for k in args.kinds))
            for cfg in pair]
    jobs = [dict(phase=1, trial=t, cfg=cfg, split=s) for t, cfg in enumerate(cfgs) for s in args.splits]
    done = _run(jobs, args, sink, deadline=time.time() + args.budget_s)
    by_trial: dict[int, list] = {}
    for r in done:
        by_trial.setdefault(r["trial"], []).append(r)
    best = {}
    for kind in args.kinds:
        space = SPACES[kind]
        ranked = sorted((np.mean([r["rmse"] for r in rs]), t, np.mean([r["secs"] for r in rs]))
                        for t, rs in by_trial.items()
                        if len(rs) == len(args.splits) and cfgs[t]["kind"] == kind)
        print(f"\n## Phase 1, {kind}: {len(ranked)} complete trials, mean RMSE over split seeds {args.splits}\n")
        print("| rank | trial | mean RMSE | " + " | ".join(space) + " | fit s |")
        print("| --- " * (len(space) + 4) + "|")
        for i, (m, t, secs) in enumerate(ranked[:args.show]):
            full = {k: cfgs[t].get(k, "default") for k in space}
            print(f"| {i + 1} | {t} | {m:.4f} | " + " | ".join(str(full[k]) for k in space) + f" | {secs:.1f} |")
        base = [m for m, t, _ in ranked if len(cfgs[t]) == 1]
        print(f"\n{kind} current default: " + (f"{base[0]:.4f}" if base else "not finished"))
        best[kind] = [cfgs[t] for _, t, _ in ranked]
    return best


def phase2(args, sink, dots: list[dict], nn: dict):
    import bench_models as bm
    from tasks.core import contract as c
    from tasks.learning import evaluate as ev
    import pandas as pd
    ratings = pd.read_csv(args.data / "u.data", sep="\t", names=[c.USER_ID, c.ITEM_ID, c.RATING, c.RATED_AT])
    truth = {s: bm.random_split(ratings, 0.2, s)[1][c.RATING].to_numpy() for s in args.splits}
    models = {f"dot #{i + 1}": cfg for i, cfg in enumerate(dots)}
    models["nn"] = nn
    seeds = list(range(1, args.bag + 1))
    jobs = [dict(phase=2, model=name, cfg=dict(cfg, seed=ts), split=s, keep_pred=True)
            for name, cfg in models.items() for s in args.splits for ts in seeds]
    preds: dict = {}
    for r in _run(jobs, args, sink):
        preds[(r["model"], r["split"], r["cfg"]["seed"])] = np.asarray(r["pred"])
    rm = lambda s, p: ev.rmse(truth[s], p)  # noqa: E731
    print(f"\n## Phase 2: averaging training seeds (1..{args.bag}) and blending with the NN; RMSE per split\n")
    print("| model | members | " + " | ".join(f"split {s}" for s in args.splits) + " | mean |")
    print("| --- | --- | " + "--- | " * len(args.splits) + "--- |")
    for name in models:
        for m in sorted({m for m in (1, 2, 3, args.bag) if m <= args.bag}):
            vals = [rm(s, np.mean([preds[(name, s, ts)] for ts in seeds[:m]], 0)) for s in args.splits]
            print(f"| {name} | {m} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {np.mean(vals):.4f} |")
    for name in [n for n in models if n.startswith("dot")]:
        for w in (0.5, 0.6, 0.7):
            for m in sorted({1, args.bag}):
                vals = [rm(s, w * np.mean([preds[(name, s, ts)] for ts in seeds[:m]], 0)
                        + (1 - w) * np.mean([preds[("nn", s, ts)] for ts in seeds[:m]], 0))
                        for s in args.splits]
                print(f"| {w} × {name} + {1 - w:.1f} × nn | {m} + {m} | " + " | ".join(f"{v:.4f}" for v in vals)
                      + f" | {np.mean(vals):.4f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-100k")
    p.add_argument("--device", default="cuda")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--trials", type=int, default=160)
    p.add_argument("--splits", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--kinds", type=lambda s: s.split(","), default=["dot_bias", "embedding_nn"])
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--budget-s", type=float, default=300, help="stop submitting phase-1 trials after this")
    p.add_argument("--best", type=int, default=3, help="phase 2: how many top configs to bag")
    p.add_argument("--bag", type=int, default=5, help="phase 2: training seeds per config")
    p.add_argument("--show", type=int, default=25)
    p.add_argument("--out", type=Path, default=Path("sweep_rating.jsonl"))
    p.add_argument("--phase2-configs", type=str, default=None,
                   help='skip phase 1: JSON {"dot_bias": [cfg, ...], "embedding_nn": [cfg]}')
    a = p.parse_args(argv)
    t0 = time.time()
    with open(a.out, "a") as sink:
        best = json.loads(a.phase2_configs) if a.phase2_configs else phase1(a, sink)
        dots = best.get("dot_bias", [{}])[:a.best]
        nn = (best.get("embedding_nn") or [dict(kind="embedding_nn")])[0]
        if a.bag > 0:
            phase2(a, sink, dots, nn)
    print(f"\nsweep done in {time.time() - t0:.0f} s on {a.device} with {a.workers} workers")


if __name__ == "__main__":
    main()
