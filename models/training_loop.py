"""One training loop for every model: AdamW, one-cycle, whole data set in device tensors."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from models.config import Mse, Softmax, TrainConfig


class DeviceUnavailable(RuntimeError):
    """A CUDA device was asked for and torch sees none: never fall back to the CPU silently."""


def pick_device(device=None) -> torch.device:
    """The given device ('cpu', 'cuda', 'cuda:1'); None or 'auto': CUDA when present, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise DeviceUnavailable(f"device '{device}' asked for, but torch {torch.__version__} sees "
                                f"{torch.cuda.device_count()} CUDA device(s) (CUDA build: {torch.version.cuda}); "
                                "use --device cpu or fix the worker's GPU set-up")
    return dev


def batch_loss(model, users, items, ratings, loss: Mse | Softmax, l2: float, n_items: int, generator=None,
               when=None):
    """Loss of one batch: MSE on ratings, or softmax cross-entropy of the rated item over items (when [B, T]: the
    pairs' time features, for a model with time input)."""
    if isinstance(loss, Mse):
        pred = model(users, items) if when is None else model(users, items, when=when)
        return F.mse_loss(pred, ratings) + _l2(model, users, items, l2)
    if loss.n_negatives <= 0 or loss.n_negatives >= n_items - 1:
        # full softmax: every user in the batch against all known items (model rows 1..n_items-1)
        candidates = torch.arange(1, n_items, device=users.device)
        logits = model.raw_all(users, candidates)                           # [B, I]
        ce = F.cross_entropy(logits, items - 1)
    else:
        # sampled softmax: the positive against S uniform negatives shared by the batch
        neg = torch.randint(1, n_items, (loss.n_negatives,), device=users.device, generator=generator)
        pos = model.raw(users, items)                                       # [B]
        neg_logits = model.raw_all(users, neg)                              # [B, S]
        neg_logits = neg_logits.masked_fill(neg[None, :] == items[:, None], float("-inf"))
        logits = torch.cat([pos[:, None], neg_logits], 1)                   # [B, 1+S]
        ce = F.cross_entropy(logits, torch.zeros_like(items))
    return ce + _l2(model, users, items, l2)


def _l2(model, users, items, l2: float):
    # Penalises each row as often as it is used: frequent users/items are held less tightly than
    # AdamW's uniform decay holds them, rare ones more; summed over factors, averaged over the batch.
    if l2 <= 0 or not model.training:
        return 0.0
    return l2 * (model.user_factors(users).pow(2).sum(-1) + model.item_factors(items).pow(2).sum(-1)).mean()


@torch.no_grad()
def mean_loss(model, users, items, ratings, config: TrainConfig, loss: Mse | Softmax, n_items: int,
              when=None) -> float:
    """Mean loss over a whole set in eval mode (sampled softmax uses a fixed seed, so epochs compare)."""
    model.eval()
    gen = torch.Generator(device=users.device).manual_seed(config.seed + 1)
    chunk = 1 << 16
    if isinstance(loss, Softmax):  # a [chunk, candidates, width] work space: keep it near 64 MiB
        width = model.user_in.out_features if hasattr(model, "user_in") else 1
        cands = n_items if loss.n_negatives <= 0 else loss.n_negatives + 1
        chunk = max(1, (1 << 24) // (cands * width))
    total = torch.zeros((), device=users.device)
    for s in range(0, len(users), chunk):
        sl = slice(s, s + chunk)
        total += batch_loss(model, users[sl], items[sl], ratings[sl], loss, 0.0, n_items, gen,
                            None if when is None else when[sl]) * len(users[sl])
    return float(total) / max(1, len(users))


def optimizers(model, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW over the parameters; embeddings with sparse gradients (config.sparse_grad) get SparseAdam instead."""
    sparse = [p for mod in model.modules() if isinstance(mod, torch.nn.Embedding) and mod.sparse
              for p in mod.parameters()]
    chosen = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in chosen]
    opts: list[torch.optim.Optimizer] = []
    if dense:
        # fused: one kernel per step instead of ~10 per tensor (the NN's fit at ML-100k spent 40 % of its CPU in
        # AdamW's per-tensor ops); same update up to float order. CPU and CUDA only.
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in dense)
        opts.append(torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.wd, fused=fused or None))
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=config.lr))
    return opts


def train(model, users, items, ratings, config: TrainConfig, loss: Mse | Softmax, *, n_items: int, valid=None,
          log=None, when=None) -> list[dict]:
    """Train in place with `loss`; users/items are model indices (LongTensor [N]) on the model's device.

    when: the ratings' time features [N, T] for a model with time input (valid then has them as a 4th part).

    Returns one dict per epoch: epoch, train_loss, valid_loss (None without valid), seconds, and
    finished_at (wall-clock unix seconds at the end of the epoch).
    """
    device = users.device
    gen = torch.Generator(device=device).manual_seed(config.seed)
    n = len(users)
    bs = min(config.batch_size, n)
    steps = math.ceil(n / bs)
    opts = optimizers(model, config)
    scheds = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=config.lr, total_steps=config.epochs * steps)
              for o in opts]
    history = []
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, device=device, generator=gen)
        total = torch.zeros((), device=device)  # summed on device: no host sync per step
        for b in range(steps):
            idx = perm[b * bs:(b + 1) * bs]
            step_loss = batch_loss(model, users[idx], items[idx], ratings[idx], loss, config.l2, n_items, gen,
                                   None if when is None else when[idx])
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            step_loss.backward()
            for opt, sched in zip(opts, scheds):
                opt.step()
                sched.step()
            total += step_loss.detach() * len(idx)
        train_loss = float(total) / n
        valid_loss = None if valid is None else mean_loss(model, *valid[:3], config, loss, n_items,
                                                          valid[3] if len(valid) > 3 else None)
        row = dict(epoch=epoch, train_loss=train_loss, valid_loss=valid_loss,
                   seconds=time.perf_counter() - t0, finished_at=time.time())
        history.append(row)
        if log is not None:
            log(row)
    model.eval()
    return history
