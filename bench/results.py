"""What is measured: the metric catalogue with issue #6's targets, repetitions per cell, medians and ratios."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.servers import ANCHOR


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    better: Literal["higher", "lower"]
    # Issue #6 target: ("ratio", x) means gateway ≥ x × tuned Orthanc; ("max", s) means gateway ≤ s.
    target: tuple[Literal["ratio", "max"], float] | None = None


METRICS = (
    Metric("store_1_ips", "C-STORE, 1 association", "inst/s", "higher", ("ratio", 1.0)),
    Metric("store_1_mbps", "C-STORE, 1 association", "MB/s", "higher"),
    Metric("store_4_ips", "C-STORE, 4 associations", "inst/s", "higher", ("ratio", 1.5)),
    Metric("store_4_mbps", "C-STORE, 4 associations", "MB/s", "higher"),
    Metric("searchable_1_s", "searchable after last store (1 assoc.)", "s", "lower", ("max", 2.0)),
    Metric("searchable_4_s", "searchable after last store (4 assoc.)", "s", "lower", ("max", 2.0)),
    Metric("qido_rps", "QIDO /studies, 8 conn.", "req/s", "higher", ("ratio", 2.0)),
    Metric("qido_p50_ms", "QIDO /studies, 8 conn. p50", "ms", "lower"),
    Metric("qido_p99_ms", "QIDO /studies, 8 conn. p99", "ms", "lower"),
    Metric("qido_serial_ms", "QIDO /studies, 1 conn. p50", "ms", "lower"),
    Metric("qido_patient_rps", "QIDO /studies?PatientID=, 8 conn.", "req/s", "higher", ("ratio", 2.0)),
    Metric("qido_patient_p50_ms", "QIDO ?PatientID=, 8 conn. p50", "ms", "lower"),
    Metric("qido_patient_p99_ms", "QIDO ?PatientID=, 8 conn. p99", "ms", "lower"),
    Metric("qido_patient_serial_ms", "QIDO ?PatientID=, 1 conn. p50", "ms", "lower"),
    Metric("metadata_rps", "WADO /metadata (study), 8 conn.", "req/s", "higher", ("ratio", 3.0)),
    Metric("metadata_p50_ms", "WADO /metadata, 8 conn. p50", "ms", "lower"),
    Metric("metadata_p99_ms", "WADO /metadata, 8 conn. p99", "ms", "lower"),
    Metric("metadata_serial_ms", "WADO /metadata, 1 conn. p50", "ms", "lower"),
    Metric("retrieve_mbps", "WADO whole-study retrieve", "MB/s", "higher", ("ratio", 0.8)),
    Metric("peak_rss_mb", "peak RSS, process tree", "MB", "lower"),
    Metric("other_cpu_pct", "CPU used by other processes", "%", "lower"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}


@dataclass
class Cell:
    """One metric of one server: a value per successful repetition, and why the others have none."""

    values: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def not_available(self) -> bool:
        """True when no value exists because the server does not offer this (not because it failed)."""
        return not self.values and bool(self.notes) and all(n.startswith("n/a") for n in self.notes)

    @property
    def failed(self) -> bool:
        """True when a repetition failed (as opposed to n/a)."""
        return any(not n.startswith("n/a") for n in self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "median": self.median,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "notes": sorted(set(self.notes)),
        }


@dataclass
class Results:
    """Every cell of the table, by server then metric key."""

    servers: list[str]
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)

    def cell(self, server: str, key: str) -> Cell:
        if key not in METRIC_BY_KEY:
            raise KeyError(key)
        return self.cells.setdefault(server, {}).setdefault(key, Cell())

    def add(self, server: str, key: str, value: float) -> None:
        self.cell(server, key).values.append(value)

    def note(self, server: str, key: str, note: str) -> None:
        self.cell(server, key).notes.append(note)

    def ratio(self, key: str, server: str = "gateway") -> float | None:
        """Median of `server` over median of the tuned Orthanc (None when either is missing)."""
        mine, anchor = self.cell(server, key).median, self.cell(ANCHOR, key).median
        if mine is None or anchor is None or anchor == 0:
            return None
        return mine / anchor

    def target_met(self, key: str) -> bool | None:
        """Whether the gateway meets issue #6's target for `key` (None when there is none or no figure)."""
        metric = METRIC_BY_KEY[key]
        if metric.target is None:
            return None
        kind, bound = metric.target
        if kind == "ratio":
            ratio = self.ratio(key)
            return None if ratio is None else ratio >= bound
        value = self.cell("gateway", key).median
        return None if value is None else value <= bound

    def failures(self) -> list[str]:
        """Every error note, as "server metric: note"."""
        return [
            f"{server} {key}: {note}"
            for server in self.servers
            for key, cell in self.cells.get(server, {}).items()
            for note in sorted(set(cell.notes))
            if not note.startswith("n/a")
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "anchor": ANCHOR,
            "metrics": [
                {"key": m.key, "label": m.label, "unit": m.unit, "better": m.better, "target": m.target}
                for m in METRICS
            ],
            "servers": {
                server: {m.key: self.cell(server, m.key).to_json() for m in METRICS} for server in self.servers
            },
            "ratios": {m.key: self.ratio(m.key) for m in METRICS},
            "targets_met": {m.key: self.target_met(m.key) for m in METRICS if m.target is not None},
        }
