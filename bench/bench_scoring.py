"""Scoring throughput: top-k items per user from synthetic factors, with rated items excluded.

Needs only torch and numpy (imports models.scoring, which imports nothing else), so it runs on a bare
GPU box:  python bench/bench_scoring.py --device cuda --users 1000000 --items 100000 --k 100
Default: 160k users x 60k items, top-100, 64 factors, 20 excluded (rated) items per user, on CUDA when
present else CPU. Prints one JSON line; --similar also times top-k cosine neighbours of every item.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models import scoring  # noqa: E402


def synthetic(n_users: int, n_items: int, d: int, rated_per_user: int, seed: int = 0):
    """Random factors, biases and rated pairs (CSR over users), like a trained dot-bias model."""
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(n_users, d, generator=g) / d ** 0.5
    items = torch.randn(n_items, d, generator=g) / d ** 0.5
    item_bias = torch.randn(n_items, generator=g) * 0.1
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), rated_per_user)
    cols = rng.integers(0, n_items, size=n_users * rated_per_user)
    return users, items, item_bias, scoring.csr_from_pairs(rows, cols, n_users)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=160_000)
    ap.add_argument("--items", type=int, default=60_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--rated", type=int, default=20, help="excluded (rated) items per user")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when present)")
    ap.add_argument("--chunk", type=int, default=None, help="users per chunk (default: models.scoring budget)")
    ap.add_argument("--similar", action="store_true", help="also time cosine top-k neighbours of every item")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    users, items, item_bias, exclude = synthetic(args.users, args.items, args.factors, args.rated)
    # warm-up on a slice (CUDA context, kernels), not timed
    scoring.topk_dot(users[:1024], items, args.k, item_bias=item_bias, device=device)
    sync(device)
    t0 = time.perf_counter()
    cols, vals = scoring.topk_dot(users, items, args.k, item_bias=item_bias, exclude=exclude,
                                  chunk_size=args.chunk, device=device)
    sync(device)
    seconds = time.perf_counter() - t0
    # sanity: excluded items never come back, scores sorted
    first = exclude[1][exclude[0][0]:exclude[0][1]]
    assert not np.isin(cols[0], first).any() and (np.diff(vals, axis=1) <= 0).all()
    result = {
        "bench": "scoring", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "users": args.users, "items": args.items, "k": args.k, "factors": args.factors,
        "excluded_pairs": int(len(exclude[1])), "seconds": round(seconds, 3),
        "users_per_second": round(args.users / seconds), "scores_per_second": float(f"{args.users * args.items / seconds:.3g}"),
    }
    if args.similar:
        v = torch.nn.functional.normalize(items.to(device), dim=1)
        diag = np.arange(args.items)
        t0 = time.perf_counter()
        scoring.topk(lambda a, b: v[a:b] @ v.T, args.items, args.items, 20,
                     exclude=scoring.csr_from_pairs(diag, diag, args.items), device=device)
        sync(device)
        result["similar_items_k20_seconds"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
