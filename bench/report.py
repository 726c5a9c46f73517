"""The results as one table: on the terminal (rich), and as JSON + markdown files next to each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.results import METRICS, Cell, Metric, Results


def _number(value: float) -> str:
    # Three significant figures at most: the run-to-run noise here is far larger than that.
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_cell(cell: Cell) -> str:
    """ "median (min–max)", "n/a", or "error"; a trailing "!" when some repetitions failed."""
    if cell.not_available:
        return "n/a"
    median = cell.median
    if median is None:
        return "error" if cell.failed else "–"
    text = _number(median)
    if len(cell.values) > 1:
        text += f" ({_number(min(cell.values))}–{_number(max(cell.values))})"
    return text + (" !" if cell.failed else "")


def format_ratio(results: Results, metric: Metric) -> str:
    if metric.key == "other_cpu_pct" or (metric.target is not None and metric.target[0] == "max"):
        return ""  # an absolute target (seconds until searchable) or a figure about the machine: no ratio
    ratio = results.ratio(metric.key)
    return "n/a" if ratio is None else f"{ratio:.2f}×"


def format_target(results: Results, metric: Metric) -> str:
    if metric.target is None:
        return ""
    kind, bound = metric.target
    text = f"≥ {bound:g}×" if kind == "ratio" else f"≤ {bound:g} s"
    met = results.target_met(metric.key)
    return f"{text} {'met' if met else 'unmet'}" if met is not None else f"{text} n/a"


def rows(results: Results) -> list[list[str]]:
    """The table body: metric, unit, one column per server, ratio, target."""
    body = []
    for metric in METRICS:
        cells = [format_cell(results.cell(server, metric.key)) for server in results.servers]
        body.append([metric.label, metric.unit, *cells, format_ratio(results, metric), format_target(results, metric)])
    return body


def header(results: Results) -> list[str]:
    return ["measure", "unit", *results.servers, "gateway / tuned Orthanc", "issue #6 target"]


def print_table(results: Results, machine: dict[str, str], console: Console) -> None:
    """The one table of the run, then the machine it ran on and any errors."""
    table = Table(title="dicom-gateway bench: median (min–max) over repetitions", title_justify="left")
    for n, name in enumerate(header(results)):
        table.add_column(name, justify="left" if n < 2 else "right", no_wrap=n >= 2)
    for row in rows(results):
        style = "green" if row[-1].endswith(" met") else "red" if row[-1].endswith("unmet") else None
        table.add_row(*row[:-1], f"[{style}]{row[-1]}[/]" if style else row[-1])
    console.print(table)
    console.print(" · ".join(f"[bold]{k}[/] {v}" for k, v in machine.items() if k != "command"))
    for failure in results.failures():
        console.print(f"[red]error[/] {failure}")


def markdown(results: Results, machine: dict[str, str], parameters: dict[str, Any]) -> str:
    """The table and the machine as markdown, for bench/README.md and the results folder."""
    lines = ["| " + " | ".join(header(results)) + " |", "|" + "---|" * 2 + "---:|" * (len(header(results)) - 2)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows(results)]
    lines += ["", f"Command: `{machine.get('command', 'python -m bench')}`", ""]
    lines += [f"- **{key}**: {value}" for key, value in machine.items() if key != "command"]
    lines += ["- **parameters**: " + ", ".join(f"{k}={v}" for k, v in parameters.items())]
    failures = results.failures()
    if failures:
        lines += ["", "Errors:", *[f"- {f}" for f in failures]]
    return "\n".join(lines) + "\n"


def write_results(
    results: Results, machine: dict[str, str], parameters: dict[str, Any], out: Path
) -> tuple[Path, Path]:
    """Write `out`.json and `out`.md (a .json/.md suffix on `out` is replaced); return both paths."""
    stem = out.with_suffix("") if out.suffix in (".json", ".md") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
    document = {"machine": machine, "parameters": parameters, **results.to_json()}
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown(results, machine, parameters))
    return json_path, md_path
