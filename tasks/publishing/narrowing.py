"""Narrowing: a publication whose reach dropped or whose concentration rose past `Thresholds` against the
previous live one is flagged (`compare`); `check_narrowing(..., refuse=True)` turns the flags into a
`NarrowingError`. The reasons for the thresholds: docs/publication_health.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from tasks.publishing.publication_metrics import (
    COVERAGE_AT_10, COVERAGE_AT_N, GINI_AT_10, METRICS, POPULARITY_LIFT_AT_10, SIMILAR_COVERAGE, SIMILAR_GINI,
    SIMILAR_TOP1PCT_SHARE, TOP1PCT_SHARE_AT_10,
)


@dataclass(frozen=True)
class Thresholds:
    """How far a figure may move against the previous live publication before it is flagged.

    Relative limits are shares of the previous value (0.10 = a 10 % drop); absolute limits are in the
    metric's own unit (Gini and slot shares are in [0, 1]). Defaults and why: docs/publication_health.md.
    """

    coverage_relative_drop: float = 0.10     # coverage_at_10, coverage_at_n, similar_coverage
    gini_rise: float = 0.02                  # gini_at_10, similar_gini
    top_share_rise: float = 0.05             # top1pct_share_at_10, similar_top1pct_share
    popularity_relative_rise: float = 0.10   # popularity_lift_at_10

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Thresholds.{f.name}: must be a positive number, got {value!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "Thresholds":
        """Defaults overridden by d, rejecting unknown keys."""
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"Thresholds: unknown field(s) {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


# (metric, direction that narrows, 'relative' | 'absolute', Thresholds field)
RULES: tuple[tuple[str, str, str, str], ...] = (
    (COVERAGE_AT_10, "drop", "relative", "coverage_relative_drop"),
    (COVERAGE_AT_N, "drop", "relative", "coverage_relative_drop"),
    (SIMILAR_COVERAGE, "drop", "relative", "coverage_relative_drop"),
    (GINI_AT_10, "rise", "absolute", "gini_rise"),
    (SIMILAR_GINI, "rise", "absolute", "gini_rise"),
    (TOP1PCT_SHARE_AT_10, "rise", "absolute", "top_share_rise"),
    (SIMILAR_TOP1PCT_SHARE, "rise", "absolute", "top_share_rise"),
    (POPULARITY_LIFT_AT_10, "rise", "relative", "popularity_relative_rise"),
)


@dataclass(frozen=True)
class NarrowingWarning:
    """One figure that moved past its threshold against the previous live publication."""

    metric: str
    current: float
    previous: float
    change: float          # current − previous, or (current − previous) / previous for relative rules
    mode: str              # 'relative' | 'absolute'
    threshold: float

    @property
    def message(self) -> str:
        fmt = (lambda x: f"{x:+.1%}") if self.mode == "relative" else (lambda x: f"{x:+.4f}")
        limit = f"{self.threshold:.0%} relative" if self.mode == "relative" else f"{self.threshold:g} absolute"
        return (f"{self.metric} {self.previous:.4g} -> {self.current:.4g} ({fmt(self.change)}; "
                f"threshold {limit})")

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message}


class NarrowingError(RuntimeError):
    """A publication narrowed past its thresholds and refusal is on; the previous publication stays live."""

    def __init__(self, warnings: list[NarrowingWarning], previous_id: str | None = None):
        self.warnings, self.previous_id = list(warnings), previous_id
        keep = f"; publication {previous_id} stays live" if previous_id else ""
        super().__init__("publication refused, it narrows past the thresholds: "
                         + "; ".join(w.message for w in self.warnings) + keep)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def compare(current: dict, previous: dict | None, thresholds: Thresholds | None = None) -> list[NarrowingWarning]:
    """Warnings for each RULES figure that narrowed past its threshold (none without a previous publication).

    A figure missing or NaN on either side is skipped; a relative rule with a previous value of 0 is
    skipped too (no share of nothing).
    """
    if not previous:
        return []
    thresholds = thresholds or Thresholds()
    found = []
    for metric, direction, mode, field_name in RULES:
        now, before = current.get(metric), previous.get(metric)
        if not (_finite(now) and _finite(before)):
            continue
        delta = now - before
        if mode == "relative":
            if before == 0:
                continue
            delta /= abs(before)
        limit = getattr(thresholds, field_name)
        moved = -delta if direction == "drop" else delta
        if moved > limit:
            found.append(NarrowingWarning(metric, float(now), float(before), float(delta), mode, float(limit)))
    return found


def check_narrowing(current: dict, previous: dict | None, thresholds: Thresholds | None = None, *,
                    refuse: bool = False, previous_id: str | None = None) -> list[NarrowingWarning]:
    """compare(); with refuse=True any warning raises NarrowingError instead of being returned."""
    found = compare(current, previous, thresholds)
    if found and refuse:
        raise NarrowingError(found, previous_id)
    return found


def summary_markdown(current: dict, previous: dict | None, warnings: list[NarrowingWarning]) -> str:
    """A Markdown table of every figure (current, previous, change) with the warnings first."""
    lines = []
    if warnings:
        lines += ["**Narrowing flagged** against the previous live publication:", ""]
        lines += [f"- {w.message}" for w in warnings] + [""]
    flagged = {w.metric for w in warnings}
    lines += ["| metric | value | previous | change |", "| --- | --- | --- | --- |"]
    for name in [m for m in METRICS if m in current] + [m for m in current if m not in METRICS]:
        now, before = current[name], (previous or {}).get(name)
        change = f"{now - before:+.4g}" if _finite(now) and _finite(before) else ""
        mark = " ⚠" if name in flagged else ""
        shown_before = f"{before:.4g}" if _finite(before) else ""
        lines.append(f"| {name}{mark} | {now:.4g} | {shown_before} | {change} |")
    return "\n".join(lines)
