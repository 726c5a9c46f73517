"""Profile the gateway's C-STORE ingest with py-spy while storescu pushes the corpus, and summarise the top frames.

    python -m bench.profiling                     # the SCP process, 1 association, 1,000 instances
    python -m bench.profiling --target tree -a 4  # every process of `serve`, 4 associations

Needs py-spy (`pip install -e '.[bench]'`) and ptrace rights (root, or kernel.yama.ptrace_scope=0).
Writes a markdown summary to bench/results/ and the raw collapsed stacks (for flamegraph.pl or
speedscope) to the temp folder.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import psutil
import typer
from rich.console import Console
from rich.table import Table

from bench.corpus import CorpusSpec, default_cache_dir, load_or_generate
from bench.debian import ensure_tools
from bench.loads import store
from bench.servers import Gateway

REPO = Path(__file__).resolve().parent.parent
app = typer.Typer(add_completion=False, help=__doc__)


@dataclass(frozen=True)
class Summary:
    samples: int
    self_time: list[tuple[str, int]]  # the frame running when sampled
    inclusive: list[tuple[str, int]]  # the frame anywhere on the stack
    ours: list[tuple[str, int]]  # inclusive, our own code only (gateway/, workers/): where to act
    processes: list[tuple[str, int]]  # with --target tree: samples per process


def _function(frame: str) -> str:
    # py-spy frames read "name (path/to/file.py:123)": drop the line so one function is one row.
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarise(raw: str, top: int = 25) -> Summary:
    """Self and inclusive samples per function from py-spy's raw (collapsed) output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # --subprocesses prefixes the chain of processes (serve;worker;pool child): the last one ran the stack.
        chain = [f for f in frames if f.startswith("process ")]
        if chain:
            processes[chain[-1][:100]] += count
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_time[_function(frames[-1])] += count
        for function in {_function(f) for f in frames}:
            inclusive[function] += count
            if "(gateway/" in function or "(workers/" in function:
                ours[function] += count
    return Summary(
        total,
        self_time.most_common(top),
        inclusive.most_common(top),
        ours.most_common(top),
        processes.most_common(top),
    )


def _scp_process(serve_pid: int) -> psutil.Process:
    for child in psutil.Process(serve_pid).children(recursive=True):
        try:
            argv = child.cmdline()
        except psutil.Error:
            continue
        if "scp" in argv[1:4]:  # `python -m gateway scp --listen-fd N` under serve
            return child
    raise RuntimeError("no `dicom-gateway scp` process under serve")


def _table(title: str, rows: list[tuple[str, int]], total: int) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("samples %", justify="right")
    table.add_column("function (file)")
    for function, count in rows:
        table.add_row(f"{100 * count / max(total, 1):.1f}", function)
    return table


def markdown(summary: Summary, header: str) -> str:
    """The summary as markdown tables."""
    lines = [header, "", f"{summary.samples} samples.", ""]
    sections = [
        ("Self time (the frame running)", summary.self_time),
        ("Inclusive (anywhere on the stack)", summary.inclusive),
        ("Inclusive, gateway/ and workers/ code only", summary.ours),
    ]
    if summary.processes:
        sections.insert(0, ("Samples per process", summary.processes))
    for title, rows in sections:
        lines += [f"### {title}", "", "| % | function (file) |", "|---:|---|"]
        lines += [f"| {100 * c / max(summary.samples, 1):.1f} | `{f.replace('|', '/')}` |" for f, c in rows]
        lines.append("")
    return "\n".join(lines)


@app.command()
def main(
    instances: Annotated[
        int, typer.Option(min=1, help="Instances pushed (fresh ones: no idempotent shortcut).")
    ] = 1000,
    size: Annotated[int, typer.Option(min=8, help="Rows and columns of each image.")] = 512,
    associations: Annotated[int, typer.Option("--associations", "-a", min=1, help="Parallel storescu.")] = 1,
    seconds: Annotated[int, typer.Option(min=1, help="Longest sampling time; stops earlier with storescu.")] = 20,
    rate: Annotated[int, typer.Option(min=1, help="Samples per second.")] = 100,
    target: Annotated[Literal["scp", "tree"], typer.Option(help="The SCP process, or every process of serve.")] = "scp",
    gil: Annotated[
        bool, typer.Option(help="Only samples holding the GIL (CPU), not wall time in fsync, sockets and sleeps.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder of the markdown summary.")] = REPO / "bench" / "results",
    raw: Annotated[
        Path | None, typer.Option(help="Raw collapsed stacks (megabytes; default: the temp folder, not the repo).")
    ] = None,
    corpus_dir: Annotated[Path | None, typer.Option(help="Corpus cache folder.")] = None,
) -> None:
    """Start `dicom-gateway serve`, sample it with py-spy while storescu sends the corpus, print the top frames."""
    console = Console()
    if not console.is_terminal:
        console.width = 160
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        console.print("[red]py-spy is not installed:[/] pip install -e '.[bench]'")
        raise typer.Exit(2)
    tools = ensure_tools({"gateway"}, console, install=True)
    corpus, _ = load_or_generate(CorpusSpec(instances, 10, 4, size), corpus_dir or default_cache_dir())
    work = Path(tempfile.mkdtemp(prefix="dicom-gateway-profile-"))
    # One SCP process when it is the target, so that it serves every association and py-spy sees them all.
    server = Gateway(tools, work / "gateway", {"GATEWAY_SCP_PROCESSES": "1"} if target == "scp" else None)
    out.mkdir(parents=True, exist_ok=True)
    name = f"profile-{target}-a{associations}{'-gil' if gil else ''}"
    raw_path = raw or Path(tempfile.gettempdir()) / f"dicom-gateway-{name}.txt"
    try:
        server.start()
        assert server.process is not None
        pid = _scp_process(server.process.pid).pid if target == "scp" else server.process.pid
        argv = [py_spy, "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate), "-f", "raw", "-o", str(raw_path)]
        if target == "tree":
            argv.append("--subprocesses")
        if gil:
            argv.append("--gil")
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert tools.storescu is not None
        ingest = store(tools.storescu, server.ae_title, server.dicom_port, corpus.files, associations, work)
        console.print(
            f"stored {ingest.instances} instances in {ingest.seconds:.1f} s: {ingest.instances_per_second:.1f} inst/s "
            f"(under py-spy, which slows the process it samples)"
        )
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # storescu finished first: py-spy writes what it has on SIGINT
        _, errors = spy.communicate(timeout=60)
        if spy.returncode not in (0, -signal.SIGINT) and not raw_path.exists():
            console.print(f"[red]py-spy failed:[/] {errors.decode(errors='replace')[-800:]}")
            raise typer.Exit(1)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(raw_path.read_text())
    if summary.processes:
        console.print(_table("samples per process", summary.processes, summary.samples))
    console.print(_table("self time: the frame running when sampled", summary.self_time, summary.samples))
    console.print(_table("inclusive: the frame anywhere on the stack", summary.inclusive, summary.samples))
    console.print(_table("inclusive, gateway/ and workers/ code only", summary.ours, summary.samples))
    header = (
        f"## py-spy: gateway {target}{' (GIL only)' if gil else ''}, {associations} association(s), "
        f"{ingest.instances} instances, "
        f"{ingest.instances_per_second:.1f} inst/s under sampling"
    )
    md_path = out / f"{name}.md"
    md_path.write_text(markdown(summary, header))
    console.print(f"written: {raw_path} (raw collapsed stacks) and {md_path}")


if __name__ == "__main__":
    app()
