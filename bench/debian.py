"""The Debian packages the bench needs: find their programs, install them when we may, else say how."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

ORTHANC_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
DICOMWEB_PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
DICOMWEB_PLUGIN_GLOBS = ("/usr/lib/orthanc/libOrthancDicomWeb.so*", "/usr/share/orthanc/plugins/*DicomWeb*.so*")
INSTALL_HINT = "apt-get install dcmtk orthanc orthanc-dicomweb wrk"


@dataclass(frozen=True)
class Tools:
    """Paths of the programs the bench runs; None when missing."""

    storescu: str | None
    storescp: str | None
    echoscu: str | None
    wrk: str | None
    orthanc: str | None
    dicomweb_plugin: str | None

    def missing_packages(self, servers: set[str]) -> list[str]:
        """Debian packages to install for a run of `servers` (always dcmtk and wrk: the load needs them)."""
        missing = []
        if not (self.storescu and self.storescp and self.echoscu):
            missing.append("dcmtk")
        if any(s.startswith("orthanc") for s in servers):
            if not self.orthanc:
                missing.append("orthanc")
            if not self.dicomweb_plugin:
                missing.append("orthanc-dicomweb")
        if not self.wrk:
            missing.append("wrk")
        return missing


def _first_existing(candidates: tuple[str, ...], globs: tuple[str, ...] = ()) -> str | None:
    for candidate in candidates:
        if Path(candidate).is_file():
            return candidate
    for pattern in globs:
        matches = sorted(Path("/").glob(pattern.lstrip("/")))
        if matches:
            return str(matches[0])
    return None


def find_tools() -> Tools:
    """Locate every program; the Orthanc plugin is looked for where Debian puts it."""
    return Tools(
        storescu=shutil.which("storescu"),
        storescp=shutil.which("storescp"),
        echoscu=shutil.which("echoscu"),
        wrk=shutil.which("wrk"),
        orthanc=shutil.which("Orthanc") or _first_existing(ORTHANC_CANDIDATES),
        dicomweb_plugin=_first_existing(DICOMWEB_PLUGIN_CANDIDATES, DICOMWEB_PLUGIN_GLOBS),
    )


def _stop_packaged_orthanc(console: Console) -> None:
    # Installing `orthanc` may start its system service on 4242/8042; the bench runs its own instances.
    if shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", "orthanc"], capture_output=True, check=False)
    if shutil.which("service"):
        subprocess.run(["service", "orthanc", "stop"], capture_output=True, check=False)
    console.print("[dim]stopped the orthanc system service the package may have started[/]")


def ensure_tools(servers: set[str], console: Console, install: bool) -> Tools:
    """Return the tools, installing missing Debian packages with apt-get when allowed and running as root.

    Raises SystemExit (status 2) with the apt-get line to run when something is still missing.
    """
    tools = find_tools()
    missing = tools.missing_packages(servers)
    if not missing:
        return tools
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        console.print(f"[bold]installing missing Debian packages:[/] {' '.join(command)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(command, env=env, check=False)
        if "orthanc" in missing:
            _stop_packaged_orthanc(console)
        tools = find_tools()
        missing = tools.missing_packages(servers)
    if missing:
        console.print(
            f"[bold red]missing Debian packages: {' '.join(missing)}[/]\n"
            f"install them with:  {INSTALL_HINT}\n"
            "(or choose servers with --only, e.g. --only gateway,storescp)"
        )
        raise SystemExit(2)
    return tools
