"""`python -m bench` (`make bench`): the gateway side by side with Orthanc and DCMTK storescp, in one table."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.corpus import CorpusSpec, default_cache_dir, load_or_generate, study_sizes
from bench.debian import ensure_tools
from bench.report import print_table, write_results
from bench.runner import Options, Run, parameters
from bench.servers import DEFAULT_SERVER_NAMES, SERVER_NAMES, parse_gateway_env
from bench.system import machine_info

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "results" / "latest"

app = typer.Typer(add_completion=False, help=__doc__)


def _servers(only: str | None) -> list[str]:
    if not only:
        return list(DEFAULT_SERVER_NAMES)
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SERVER_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown server {', '.join(unknown)}; choose from {', '.join(SERVER_NAMES)}")
    return [name for name in SERVER_NAMES if name in chosen]  # table order, whatever the order given


def _gateway_settings(pairs: list[str] | None) -> dict[str, str]:
    try:
        return parse_gateway_env(pairs)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gateway-env") from None


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C: every finally block stops the servers it started.
    raise KeyboardInterrupt


@app.command()
def main(
    instances: Annotated[int, typer.Option(min=1, help="Instances in the corpus.")] = 1000,
    studies: Annotated[int, typer.Option(min=1, help="Studies (study 0 gets ≥100 instances when it can).")] = 10,
    series_per_study: Annotated[int, typer.Option(min=1, help="Series per study.")] = 4,
    size: Annotated[int, typer.Option(min=8, help="Rows and columns of each 16-bit image.")] = 512,
    repetitions: Annotated[int, typer.Option(min=1, help="Repetitions; medians and min–max over them.")] = 3,
    only: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated servers, of {', '.join(SERVER_NAMES)} (default: all but gateway-nosync)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Result files: OUT.json and OUT.md.")] = DEFAULT_OUT,
    duration: Annotated[int, typer.Option(min=1, help="Seconds of each wrk run (and of retrieve).")] = 5,
    connections: Annotated[int, typer.Option(min=1, help="wrk connections for the loaded figures.")] = 8,
    corpus_dir: Annotated[Path | None, typer.Option(help="Corpus cache folder.")] = None,
    searchable_timeout: Annotated[float, typer.Option(help="Give up waiting for QIDO after this many s.")] = 300.0,
    install: Annotated[bool, typer.Option(help="apt-get install missing Debian packages when root.")] = True,
    keep_work: Annotated[bool, typer.Option(help="Keep the servers' logs (kept anyway after an error).")] = False,
    gateway_env: Annotated[
        list[str] | None,
        typer.Option(help="GATEWAY_NAME=VALUE for the gateway, repeatable (to compare settings; default: none)."),
    ] = None,
) -> None:
    """Generate (or reuse) the corpus, measure every server, print the table and write OUT.json / OUT.md."""
    console = Console()
    if not console.is_terminal:
        console.width = 180  # a pipe or a CI log: rich would wrap the table at 80 columns
    signal.signal(signal.SIGTERM, _interrupt)
    servers = _servers(only)
    tools = ensure_tools(set(servers), console, install)
    spec = CorpusSpec(instances, studies, series_per_study, size)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(f"corpus {spec.key()}", total=instances)
        corpus, generated = load_or_generate(
            spec, corpus_dir or default_cache_dir(), lambda n: progress.advance(task, n)
        )
        progress.update(task, completed=instances)
    console.print(
        f"corpus {'generated' if generated else 'reused'}: {corpus.root} — {len(corpus.files)} instances, "
        f"{corpus.total_bytes / 1e6:.0f} MB, studies of {study_sizes(instances, studies)} instances"
    )
    options = Options(
        servers, repetitions, duration, connections, searchable_timeout, keep_work, _gateway_settings(gateway_env)
    )
    try:
        results = Run(options, tools, corpus, console).run()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every server started was stopped[/]")
        raise typer.Exit(130) from None
    machine = machine_info(tools.orthanc, REPO)
    print_table(results, machine, console)
    json_path, md_path = write_results(results, machine, parameters(corpus, options), out)
    console.print(f"written: {json_path} and {md_path}")
    if results.failures():
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
