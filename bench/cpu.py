"""CPU per stored instance of every process of a server under test while storescu pushes the corpus.

    python -m bench.cpu                                    # the gateway, 4 associations, 300 instances
    python -m bench.cpu --server orthanc-tuned             # the same push into the tuned Orthanc
    python -m bench.cpu --gateway-env GATEWAY_SCP_PROCESSES=1

Once every core is busy (4 associations on 2 cores) throughput is decided by the CPU each instance
costs, summed over every process: the SCP, the workers, the API answering the searchable polls, and
storescu itself. This prints user and kernel milliseconds per instance for each process (psutil) while
storescu pushes (what throughput pays for), with the minor page faults per instance (a
kernel cost of allocating large buffers), then what each spends after the last store response until
every instance is searchable (the index catching up), and how much of the machine sat idle or waited
on the disk during the push. CPU per instance moves far less between runs on a shared machine than
instances per second, so it is the figure to judge a change by.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import httpx
import psutil
import typer
from rich.console import Console
from rich.table import Table

from bench.corpus import CorpusSpec, default_cache_dir, load_or_generate
from bench.debian import ensure_tools
from bench.loads import store, wait_searchable
from bench.servers import SERVER_NAMES, make_server, parse_gateway_env
from bench.system import process_tree

app = typer.Typer(add_completion=False, help=__doc__)


def _label(process: psutil.Process) -> str:
    argv = process.cmdline()
    if argv[1:3] == ["-B", "-c"]:
        return "python (multiprocessing child, e.g. an API process)"
    return " ".join([Path(argv[0]).name, *argv[1:4]])[:50] if argv else process.name()


def _minor_faults(pid: int) -> int:
    # Minor page faults (Linux /proc; psutil does not report them): each is a trip into the kernel to
    # map a fresh page, the cost of allocating and freeing large buffers.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return 0


def _times(processes: list[psutil.Process]) -> dict[int, tuple[float, float, str, int]]:
    times = {}
    for process in processes:
        try:
            cpu = process.cpu_times()
            times[process.pid] = (cpu.user, cpu.system, _label(process), _minor_faults(process.pid))
        except psutil.NoSuchProcess:
            continue
    return times


@app.command()
def main(
    server_name: Annotated[str, typer.Option("--server", help=f"One of {', '.join(SERVER_NAMES)}.")] = "gateway",
    instances: Annotated[int, typer.Option(min=1, help="Instances pushed.")] = 300,
    size: Annotated[int, typer.Option(min=8, help="Rows and columns of each image.")] = 512,
    associations: Annotated[int, typer.Option("--associations", "-a", min=1, help="Parallel storescu.")] = 4,
    gateway_env: Annotated[
        list[str] | None, typer.Option(help="GATEWAY_NAME=VALUE for the gateway (repeatable).")
    ] = None,
    corpus_dir: Annotated[Path | None, typer.Option(help="Corpus cache folder.")] = None,
    install: Annotated[bool, typer.Option(help="apt-get install missing Debian packages (as root).")] = True,
) -> None:
    """Start the server, push the corpus with storescu, print the CPU each process spent per instance."""
    if server_name not in SERVER_NAMES:
        raise typer.BadParameter(f"choose from {', '.join(SERVER_NAMES)}", param_hint="--server")
    try:
        settings = parse_gateway_env(gateway_env)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gateway-env") from None
    console = Console()
    if not console.is_terminal:
        console.width = 120
    tools = ensure_tools({server_name}, console, install=install)
    corpus, _ = load_or_generate(CorpusSpec(instances, 10, 4, size), corpus_dir or default_cache_dir())
    work = Path(tempfile.mkdtemp(prefix="dicom-gateway-cpu-"))
    server = make_server(server_name, tools, work / server_name, settings)
    try:
        server.start()
        assert server.process is not None and tools.storescu is not None
        before = _times(process_tree(server.process.pid))
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine_before = psutil.cpu_times()
        ingest = store(tools.storescu, server.ae_title, server.dicom_port, corpus.files, associations, work)
        machine_after = psutil.cpu_times()
        pushed = _times(process_tree(server.process.pid))
        searchable = 0.0
        if server.web_root is not None:
            with httpx.Client(timeout=10) as client:
                searchable = wait_searchable(lambda: server.searchable_instances(client), len(corpus.files), 120)
        after = _times(process_tree(server.process.pid))
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    per = 1000.0 / ingest.instances  # seconds in total -> milliseconds per instance
    table = Table(
        title=f"{server_name}: {ingest.instances_per_second:.0f} inst/s with {associations} association(s), "
        f"searchable {searchable:.2f} s after the last store; CPU ms per instance"
    )
    columns = ("process", "pid", "push: user", "kernel", "total", "faults", "after: total")
    for column in columns:
        table.add_column(column, justify="left" if column == "process" else "right")
    push_total = after_total = 0.0
    for pid, (user, system, label, _faults) in sorted(after.items(), key=lambda item: -(item[1][0] + item[1][1])):
        start_user, start_system, _, start_faults = before.get(pid, (0.0, 0.0, label, 0))
        push_user, push_system, _, push_faults = pushed.get(pid, (start_user, start_system, label, start_faults))
        used_user, used_system = (push_user - start_user) * per, (push_system - start_system) * per
        later = (user + system - push_user - push_system) * per
        push_total += used_user + used_system
        after_total += later
        if used_user + used_system + later >= 0.05:
            table.add_row(
                label,
                str(pid),
                f"{used_user:.2f}",
                f"{used_system:.2f}",
                f"{used_user + used_system:.2f}",
                f"{(push_faults - start_faults) / ingest.instances:.0f}",
                f"{later:.2f}",
            )
    load_user = (children_after.ru_utime - children_before.ru_utime) * per
    load_system = (children_after.ru_stime - children_before.ru_stime) * per
    load = load_user + load_system
    table.add_row("storescu (the load)", "", f"{load_user:.2f}", f"{load_system:.2f}", f"{load:.2f}", "", "")
    table.add_row("server, all processes", "", "", "", f"{push_total:.2f}", "", f"{after_total:.2f}")
    table.add_row("everything", "", "", "", f"{push_total + load:.2f}", "", f"{after_total:.2f}")
    console.print(table)
    cores = os.cpu_count() or 1
    budget = 1000 * cores / ingest.instances_per_second
    console.print(f"{cores} cores at this rate: {budget:.2f} ms of CPU per instance if every core were busy")
    idle = (machine_after.idle - machine_before.idle) * per
    iowait = (getattr(machine_after, "iowait", 0.0) - getattr(machine_before, "iowait", 0.0)) * per
    console.print(f"during the push, per instance: {idle:.2f} ms idle, {iowait:.2f} ms waiting on the disk (all cores)")


if __name__ == "__main__":
    app()
