"""Summaries of a metric over trials (seeds) and S1's rule for choosing hyperparameters (spec 3.4a)."""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TrialSummary:
    """A metric over trials: median, central range ``(low, high)``, mean and the values themselves."""

    median: float
    low: float
    high: float
    mean: float
    values: tuple[float, ...]

    @property
    def width(self) -> float:
        return self.high - self.low


def central_range(values: Sequence[float], drop: int = 2) -> tuple[float, float]:
    """The ``drop+1``-th smallest and ``drop+1``-th largest value (spec 3.4a: 3rd to 8th of 10).

    With 10 values and ``drop`` = 2 this discards the two best and the two worst trials [V-paper].
    With ``2 * drop`` values or fewer nothing can be discarded and ``(min, max)`` is returned [I].
    """
    if len(values) == 0:
        raise ValueError("central_range needs at least one value; got none")
    ordered = sorted(values)
    if len(ordered) <= 2 * drop:
        return ordered[0], ordered[-1]
    return ordered[drop], ordered[-1 - drop]


def summarise(values: Sequence[float], drop: int = 2) -> TrialSummary:
    """Median, central range and mean of ``values`` (non-finite values make the mean inf)."""
    values = tuple(float(v) for v in values)
    low, high = central_range(values, drop)
    finite = all(math.isfinite(v) for v in values)
    mean = float(np.mean(values)) if finite else math.inf
    return TrialSummary(float(np.median(values)), low, high, mean, values)


def select_best(candidates: Mapping[Hashable, TrialSummary]) -> Hashable:
    """The key with the lowest mean, ties broken by the narrowest central range (S1 ``parse_results``) [V-code].

    Lower is better (the sine sup-norm error). NaN means count as inf. The first key wins a full
    tie, so the order of ``candidates`` makes the choice deterministic.
    """
    if not candidates:
        raise ValueError("select_best needs at least one candidate; got none")

    def order(key: Hashable) -> tuple[float, float]:
        summary = candidates[key]
        mean = summary.mean if not math.isnan(summary.mean) else math.inf
        width = summary.width if not math.isnan(summary.width) else math.inf
        return mean, width

    return min(candidates, key=order)


__all__ = ["TrialSummary", "central_range", "select_best", "summarise"]


class JournalSettingsError(ValueError):
    """A journal of candidates scored with other settings; rerunning would mix or discard them."""

    def __init__(self, path: Path, lines: list[Any], settings: dict[str, Any]) -> None:
        earlier = lines[0].get("settings", {}) if isinstance(lines[0], dict) else {}
        keys = sorted(k for k in set(earlier) | set(settings) if earlier.get(k) != settings.get(k))
        changed = ", ".join(f"{k}: {earlier.get(k)!r} then, {settings.get(k)!r} now" for k in keys)
        super().__init__(
            f"{path} holds {len(lines) - 1} candidates scored with other settings ({changed or 'no settings line'}); "
            f"rerun with those settings to resume, use another --out, or move {path.name} away to start over"
        )


class TrialJournal:
    """The scored candidates of a hyperparameter search, one JSON line each, appended as each finishes.

    A search of hours (the sine benchmark's full grid) then resumes where it stopped: :meth:`get`
    returns what an earlier run of the same ``settings`` scored. The first line holds the settings;
    a journal of other settings is refused (:class:`JournalSettingsError`), not overwritten: its
    candidates may be hours of work. A torn line (a crash mid-write) is dropped.
    """

    def __init__(self, path: str | Path, settings: Mapping[str, Any]) -> None:
        from unlearnkit.checkpoint import atomic_write_bytes, read_json_lines

        self.path = Path(path)
        header = {"settings": json.loads(json.dumps(dict(settings), default=str))}  # as it reads back
        lines = read_json_lines(self.path)
        if lines and lines[0] != header:
            raise JournalSettingsError(self.path, lines, header["settings"])
        self.entries: dict[str, dict[str, Any]] = {entry["key"]: entry for entry in lines[1:]}
        # Rewritten whole, so that appends start on a clean line after a torn one.
        text = "".join(json.dumps(line) + "\n" for line in [header, *self.entries.values()])
        atomic_write_bytes(self.path, text.encode())

    @staticmethod
    def key(*parts: Any) -> str:
        return json.dumps(parts, sort_keys=True, default=str)

    def get(self, *parts: Any) -> tuple[TrialSummary, float] | None:
        """The summary and seconds of the candidate named by ``parts``, if an earlier run scored it."""
        entry = self.entries.get(self.key(*parts))
        if entry is None:
            return None
        summary = entry["summary"]
        return TrialSummary(**{**summary, "values": tuple(summary["values"])}), entry["time_s"]

    def add(self, summary: TrialSummary, time_s: float, *parts: Any) -> None:
        from unlearnkit.checkpoint import append_json_line

        entry = {"key": self.key(*parts), "summary": asdict(summary), "time_s": time_s}
        self.entries[entry["key"]] = entry
        append_json_line(self.path, entry, default=float)  # inf (a diverged run) stays Infinity
