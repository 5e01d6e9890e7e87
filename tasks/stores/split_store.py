"""Stored splits: what identifies a split (its spec and the data's content hash), and the store under
`<data>/splits/<split_id>/` (train/valid/test Parquet + split.json, written once, reused by id; splits/CURRENT).

Making a split is tasks/learning/split.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.core import contract as c
from tasks.core import durable
from tasks.core.faults import maybe_crash
from tasks.core.settings import Paths

STRATEGIES = ("random", "user_fraction", "temporal", "leave_last_k")
SPLIT_FILE = "split.json"
CURRENT_FILE = "CURRENT"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SplitSpec:
    """How to split: strategy and its parameters (fields a strategy does not use are ignored).

    - random: seeded global fraction `test_fraction`; valid = `valid_fraction` of the rest.
    - user_fraction: per user, `test_fraction` of each user's ratings (seeded), at least one kept in train.
    - temporal: ratings at or after `cutoff` (unix seconds, UTC) are test; `cutoff=None` puts it at the
      `1 - test_fraction` quantile of the timestamps. Valid = the latest `valid_fraction` of train.
    - leave_last_k: per user, the last `k` ratings by time are test, the `k` before them valid
      (when `valid_fraction > 0`); at least one rating per user stays in train.
    """

    strategy: str = "random"
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    cutoff: int | None = None
    k: int = 1
    seed: int = 42

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"SplitSpec.strategy: must be one of {STRATEGIES}, got {self.strategy!r}")
        for name in ("test_fraction", "valid_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"SplitSpec.{name}: must be a number, got {value!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"SplitSpec.test_fraction: must be in (0, 1), got {self.test_fraction!r}")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"SplitSpec.valid_fraction: must be in [0, 1), got {self.valid_fraction!r}")
        if self.cutoff is not None and (isinstance(self.cutoff, bool) or not isinstance(self.cutoff, int)):
            raise ValueError(f"SplitSpec.cutoff: must be None or an integer unix time, got {self.cutoff!r}")
        if self.cutoff is not None and self.strategy != "temporal":
            raise ValueError(f"SplitSpec.cutoff: only applies to strategy 'temporal', not {self.strategy!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"SplitSpec.k: must be an integer >= 1, got {self.k!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SplitSpec.seed: must be an integer >= 0, got {self.seed!r}")

    def params(self) -> dict:
        """The parameters that change the result for this strategy (what the split id hashes)."""
        if self.strategy in ("random", "user_fraction"):
            return {"test_fraction": self.test_fraction, "valid_fraction": self.valid_fraction, "seed": self.seed}
        if self.strategy == "temporal":
            where = {"cutoff": self.cutoff} if self.cutoff is not None else {"test_fraction": self.test_fraction}
            return {**where, "valid_fraction": self.valid_fraction}
        return {"k": self.k, "valid": self.valid_fraction > 0}

    @classmethod
    def from_dict(cls, d: dict) -> "SplitSpec":
        """Build from a plain dict (flow parameters, split.json), rejecting unknown keys."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"SplitSpec: unknown field(s) {sorted(unknown)}")
        return cls(**d)


@dataclass
class Split:
    """The three parts of a split (contract rating columns) plus where they came from."""

    spec: SplitSpec
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    data_hash: str | None = None
    reused: bool = False  # True when read back from the store (load, get_or_create) rather than computed
    created_at: str | None = None
    path: Path | None = field(default=None, repr=False)

    @property
    def split_id(self) -> str | None:
        """Derived from the spec and the data hash (None until the data hash is known)."""
        return split_id(self.spec, self.data_hash) if self.data_hash else None

    def counts(self) -> dict[str, int]:
        """Rows per part."""
        return {c.PART_TRAIN: len(self.train), c.PART_VALID: len(self.valid), c.PART_TEST: len(self.test)}


def split_id(spec: SplitSpec, data_hash: str) -> str:
    """Short stable id: sha256 of the canonical JSON of strategy, its parameters and the data hash."""
    if not data_hash:
        raise ValueError("split_id: data_hash must be a non-empty string")
    canonical = json.dumps({"strategy": spec.strategy, "params": spec.params(), "data_hash": data_hash},
                           sort_keys=True, separators=(",", ":"))
    return spec.strategy + "-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def store(paths: Paths, split: Split, data_hash: str) -> Path:
    """Write the split under `splits/<split_id>/` atomically (temp dir + rename); idempotent."""
    sid = split_id(split.spec, data_hash)
    final = paths.splits / sid
    if (final / SPLIT_FILE).is_file():
        return final
    paths.splits.mkdir(parents=True, exist_ok=True)
    tmp = paths.splits / f".tmp-{sid}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for part, frame in zip(c.PARTS, (split.train, split.valid, split.test)):
            durable.write_file(tmp / f"{part}.parquet", lambda p, f=frame: f.to_parquet(p, index=False))
        created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest = {
            c.SPLIT_ID: sid, c.SPLIT_STRATEGY: split.spec.strategy, c.SPLIT_PARAMS: split.spec.params(),
            c.DATA_HASH: data_hash, "counts": split.counts(), c.CREATED_AT: created_at,
            "spec": asdict(split.spec), "format_version": FORMAT_VERSION,
        }
        durable.write_file(tmp / SPLIT_FILE, lambda p: p.write_text(json.dumps(manifest, indent=2, sort_keys=True)))
        durable.fsync_dir(tmp)
        maybe_crash("split-before-rename")
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / SPLIT_FILE).is_file():  # lost a race to a writer of the same id: theirs is identical
                raise
        durable.fsync_dir(paths.splits)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    split.data_hash, split.path = data_hash, final
    split.created_at = split.created_at or created_at
    return final


def manifest(paths: Paths, sid: str) -> dict:
    """The split.json of a stored split."""
    path = paths.splits / sid / SPLIT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no stored split {sid!r}: {path} does not exist")
    return json.loads(path.read_text())


def load(paths: Paths, sid: str) -> Split:
    """Read a stored split back (the same frames and spec that were stored)."""
    meta = manifest(paths, sid)
    folder = paths.splits / sid
    train, valid, test = (pd.read_parquet(folder / f"{part}.parquet") for part in c.PARTS)
    return Split(spec=SplitSpec.from_dict(meta["spec"]), train=train, valid=valid, test=test,
                 data_hash=meta[c.DATA_HASH], created_at=meta[c.CREATED_AT], path=folder, reused=True)


def is_stored(paths: Paths, sid: str) -> bool:
    """True when the split `sid` is completely stored (its manifest is written last)."""
    return (paths.splits / sid / SPLIT_FILE).is_file()

def stored_ids(paths: Paths) -> list[str]:
    """Ids of every complete stored split, sorted."""
    if not paths.splits.is_dir():
        return []
    return sorted(p.name for p in paths.splits.iterdir()
                  if not p.name.startswith(".") and (p / SPLIT_FILE).is_file())


def set_current(paths: Paths, sid: str) -> None:
    """Point `splits/CURRENT` at a stored split (atomic replace)."""
    manifest(paths, sid)  # raises if it is not stored
    durable.write_text_atomic(paths.splits / CURRENT_FILE, sid + "\n")


def current(paths: Paths) -> str | None:
    """Id of the split used by the last training, or None."""
    path = paths.splits / CURRENT_FILE
    return path.read_text().strip() if path.is_file() else None
